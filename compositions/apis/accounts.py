"""Accounts: sign up, sign in for a token, revoke the token."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from compositions.apis.exception_handlers import ErrorSerializer
from compositions.auth import TokenAuthentication, login_locked_for
from compositions.services.accounts import api_token_delete, api_token_get_or_create, user_register


class TokenOutputSerializer(serializers.Serializer):
    token = serializers.CharField()


class _PerAddressThrottle(SimpleRateThrottle):
    """Sign-in attempts per client address: it never looks at the (maybe stale) credentials."""

    scope = "sign_in"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class RegisterApi(APIView):
    """Create an account and get its token."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    class RegisterInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)

    @extend_schema(request=RegisterInputSerializer,
                   responses={201: TokenOutputSerializer, 400: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request: Request) -> Response:
        # Missing fields reach the service as "", so that every bad field is named in one answer.
        user = user_register(username=str(request.data.get("username", "")),
                             password=str(request.data.get("password", "")))
        token = api_token_get_or_create(user=user)
        return Response(TokenOutputSerializer({"token": token.key}).data, status=status.HTTP_201_CREATED)


class TokenCreateApi(APIView):
    """Trade a user name and password for the user's API token (the same one until the password changes)."""

    # Signing in ignores whatever token the client still sends.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [_PerAddressThrottle]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})

    @extend_schema(request=TokenInputSerializer, auth=[],
                   responses={200: TokenOutputSerializer, 400: ErrorSerializer, 429: ErrorSerializer})
    def post(self, request: Request) -> Response:
        serializer = self.TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        wait = login_locked_for(request._request, username)
        if wait:
            return Response(
                {"detail": f"Too many failed sign-ins. Try again in {wait // 60 or 1} minutes."},
                status=status.HTTP_429_TOO_MANY_REQUESTS, headers={"Retry-After": str(wait)},
            )
        user = authenticate(request._request, username=username, password=serializer.validated_data["password"])
        if user is None or not user.is_active:
            return Response({"detail": "Unable to sign in with these credentials."}, status=status.HTTP_400_BAD_REQUEST)
        return Response(TokenOutputSerializer({"token": api_token_get_or_create(user=user).key}).data)


class TokenDeleteApi(APIView):
    """Revoke the caller's token (signing in again makes a new one)."""

    authentication_classes = [TokenAuthentication]

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        api_token_delete(user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
