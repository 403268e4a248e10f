"""One URL, several operations: each HTTP method goes to its own API view."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.views import APIView

from compositions import selectors
from compositions.models import Composition


def method_router(**views: type[APIView]) -> Callable[..., HttpResponse]:
    """A view that hands `GET` to `views["get"]`, `POST` to `views["post"]`, and so on.

    Each API view keeps its own permissions, throttles and parsers; `schema.SchemaGenerator`
    documents each as the operation of its method.
    """
    handlers = {method.upper(): view.as_view() for method, view in views.items()}
    if "GET" in handlers:
        handlers.setdefault("HEAD", handlers["GET"])
    allowed = ", ".join(sorted(handlers))

    # Each API view checks CSRF itself for session-authenticated writes, as DRF does.
    @csrf_exempt
    def route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        handler = handlers.get(request.method or "")
        if handler is None:
            return JsonResponse({"detail": f'Method "{request.method}" not allowed.'}, status=405,
                                headers={"Allow": allowed})
        response: HttpResponse = handler(request, *args, **kwargs)
        return response

    route.api_views = views  # read by the schema generator
    return route


@csrf_exempt
def api_not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """404 in the one error shape for any path under /api/ that no operation serves.

    Routed after every API URL: with DEBUG on, Django answers a path that matches no URL with its
    HTML technical page and never calls handler404, so the API must match the path itself.
    """
    return JsonResponse({"detail": "Not found."}, status=404)


def owned_with_input(request: Request, public_id: Any, serializer_class: type[serializers.Serializer]
                     ) -> tuple[Composition, dict[str, Any]]:
    """The caller's own piece (404 for anyone else's) and the request body, validated (a 400 that
    names the field, through the exception handler's one error shape)."""
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return composition, dict(serializer.validated_data)
