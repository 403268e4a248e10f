"""Health endpoints for a load balancer or a monitor: plain JSON, no sign-in, never cached.

/health/ is the web host's own readiness (200 or 503); /health/workers/ tells whether any worker
cluster is alive and how long the queue is (200 or 503), from any web host.

They are answered by a middleware placed first: a load balancer asks by the host's address (not
in ALLOWED_HOSTS) and over plain HTTP (which SECURE_SSL_REDIRECT would redirect), and a probe
needs neither a session nor CSRF.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.cache import add_never_cache_headers

from compositions.health import WebHealth, WorkersHealth, web_health, workers_health

HEALTH_PATHS: dict[str, Callable[[], WebHealth | WorkersHealth]] = {
    "/health/": web_health, "/health/workers/": workers_health,
}


class HealthCheckMiddleware:
    """Answer GET/HEAD /health/ and /health/workers/ before host checks, redirects and sessions."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = HEALTH_PATHS.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        if request.method not in ("GET", "HEAD"):
            response: HttpResponse = JsonResponse({"detail": "Use GET."}, status=405)
            response["Allow"] = "GET, HEAD"
            return response
        report = probe()
        response = JsonResponse(report.to_dict(), status=200 if report.ok else 503)
        add_never_cache_headers(response)
        return response
