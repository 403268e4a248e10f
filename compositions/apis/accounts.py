"""Accounts: sign up, sign in for a token, list and revoke tokens, delete the account."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import authenticate
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle, SimpleRateThrottle
from rest_framework.views import APIView

from compositions.apis.exception_handlers import ErrorSerializer
from compositions.auth import TokenAuthentication, login_locked_for
from compositions.models import ApiToken
from compositions.services.accounts import (
    IssuedToken,
    api_token_create,
    api_token_revoke,
    user_delete,
    user_register_with_token,
)

NAME_HELP = "What the token is for, e.g. the device (\"Alice's phone\"); by default the client's User-Agent."


class TokenOutputSerializer(serializers.Serializer):
    """A token just made. `token` is the key: it is shown this once and cannot be read again."""

    token = serializers.CharField(source="key")
    id = serializers.IntegerField(source="token.id")
    name = serializers.CharField(source="token.name")
    prefix = serializers.CharField(source="token.prefix")
    created = serializers.DateTimeField(source="token.created")
    expires_at = serializers.DateTimeField(source="token.expires_at", allow_null=True,
                                           help_text="null: until revoked")


class ApiTokenSerializer(serializers.ModelSerializer):
    """One of the user's tokens, as listed: never its key."""

    current = serializers.SerializerMethodField(help_text="Whether this request was made with this token")

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created", "last_used_at", "expires_at", "current"]

    def get_current(self, token: ApiToken) -> bool:
        auth = self.context.get("auth")
        return isinstance(auth, ApiToken) and auth.id == token.id


def _token_name(request: Request, name: str) -> str:
    """The name sent, or else the first words of the client's User-Agent (e.g. "curl/8.5.0")."""
    if name.strip():
        return name
    words = request.META.get("HTTP_USER_AGENT", "").split()[:3]
    return " ".join(words)[:60].rstrip(" (;,")


def _issued(issued: IssuedToken, code: int = status.HTTP_200_OK) -> Response:
    return Response(TokenOutputSerializer(issued).data, status=code)


class _PerAddressThrottle(SimpleRateThrottle):
    """Sign-in attempts per client address: it never looks at the (maybe stale) credentials."""

    scope = "sign_in"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class RegisterApi(APIView):
    """Create an account and get its first token."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "register"

    class RegisterInputSerializer(serializers.Serializer):
        username = serializers.CharField(min_length=1, max_length=150)
        password = serializers.CharField(min_length=1, max_length=4096, trim_whitespace=False)
        name = serializers.CharField(max_length=100, required=False, help_text=NAME_HELP)

    @extend_schema(request=RegisterInputSerializer,
                   responses={201: TokenOutputSerializer, 400: ErrorSerializer, 415: ErrorSerializer,
                              429: ErrorSerializer})
    def post(self, request: Request) -> Response:
        # Missing fields reach the service as "", so that every bad field is named in one answer.
        issued = user_register_with_token(
            username=str(request.data.get("username", "")), password=str(request.data.get("password", "")),
            token_name=_token_name(request, str(request.data.get("name", ""))),
        )
        return _issued(issued, status.HTTP_201_CREATED)


class TokenCreateApi(APIView):
    """Trade a user name and password for a new token, shown this once (one per device: sign in on each)."""

    # Signing in ignores whatever token the client still sends.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    parser_classes = [JSONParser, MultiPartParser, FormParser]
    throttle_classes = [_PerAddressThrottle]

    class TokenInputSerializer(serializers.Serializer):
        username = serializers.CharField(min_length=1, max_length=150)
        password = serializers.CharField(min_length=1, max_length=4096, trim_whitespace=False,
                                         style={"input_type": "password"})
        name = serializers.CharField(max_length=100, required=False, help_text=NAME_HELP)

    # 200, not 201: the first clients were written against the answer of the one token per user.
    @extend_schema(request=TokenInputSerializer, auth=[],
                   responses={200: TokenOutputSerializer, 400: ErrorSerializer, 415: ErrorSerializer,
                              429: ErrorSerializer})
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
        name = _token_name(request, serializer.validated_data.get("name", ""))
        return _issued(api_token_create(user=user, name=name))


class TokenDeleteApi(APIView):
    """Revoke the token this request is made with (the user's other tokens keep working)."""

    authentication_classes = [TokenAuthentication]

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        api_token_revoke(user=request.user, token_id=request.auth.id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenListApi(APIView):
    """The caller's tokens that still work or have expired, newest first: names and prefixes, never keys."""

    @extend_schema(responses={200: ApiTokenSerializer(many=True), 401: ErrorSerializer})
    def get(self, request: Request) -> Response:
        tokens = ApiToken.objects.of_current_password(request.user)
        return Response(ApiTokenSerializer(tokens, many=True, context={"auth": request.auth}).data)


class TokenRevokeApi(APIView):
    """Revoke one of the caller's tokens; another user's token is 404."""

    @extend_schema(request=None, responses={204: None, 401: ErrorSerializer, 404: ErrorSerializer})
    def delete(self, request: Request, token_id: int) -> Response:
        if not api_token_revoke(user=request.user, token_id=token_id):
            raise NotFound("You have no token with this id.")
        return Response(status=status.HTTP_204_NO_CONTENT)


class AccountDeleteApi(APIView):
    """Delete the caller's account, every piece and every file, confirmed by the password."""

    # A stolen token must not make this a password oracle: the sign-in rate per address applies.
    throttle_classes = [_PerAddressThrottle]

    class AccountDeleteInputSerializer(serializers.Serializer):
        password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})

    # OpenAPI 3.0 gives a DELETE body no meaning, so the schema cannot declare it: the description does.
    @extend_schema(request=None, description='Send the password in the body: `{"password": "..."}`. '
                   "400 for a wrong or missing password, which leaves everything as it was.",
                   responses={204: None, 400: ErrorSerializer, 401: ErrorSerializer, 415: ErrorSerializer,
                              429: ErrorSerializer})
    def delete(self, request: Request) -> Response:
        serializer = self.AccountDeleteInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user_delete(user=request.user, password=serializer.validated_data["password"])
        return Response(status=status.HTTP_204_NO_CONTENT)
