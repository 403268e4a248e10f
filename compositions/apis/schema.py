"""The OpenAPI schema: one operation per API view, /api/v1/ only, and the model's styles as enums."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern
from drf_spectacular.generators import EndpointEnumerator as SpectacularEndpointEnumerator
from drf_spectacular.generators import SchemaGenerator as SpectacularSchemaGenerator

from compositions import runtime
from compositions.errors import ComposingUnavailable


def _one_pattern_per_view(patterns: list[Any]) -> Iterator[Any]:
    """A `method_router` URL as one pattern per API view behind it, so each is documented as itself."""
    for pattern in patterns:
        views = getattr(getattr(pattern, "callback", None), "api_views", None) if isinstance(
            pattern, URLPattern) else None
        if views is None:
            yield pattern
            continue
        for view in views.values():
            yield URLPattern(pattern.pattern, view.as_view(), pattern.default_args, pattern.name)


class EndpointEnumerator(SpectacularEndpointEnumerator):
    def _get_api_endpoints(self, patterns: Any, prefix: str) -> list[Any]:
        patterns = self.patterns if patterns is None else patterns
        return super()._get_api_endpoints(list(_one_pattern_per_view(patterns)), prefix)


class SchemaGenerator(SpectacularSchemaGenerator):
    """drf-spectacular's generator, reading through the method routers."""

    endpoint_inspector_cls = EndpointEnumerator


def schema_v1_only(endpoints: list[tuple[str, str, str, Any]]) -> list[tuple[str, str, str, Any]]:
    """drf-spectacular hook: document /api/v1/ once; the unversioned /api/ paths are aliases."""
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


def schema_enums(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular hook: the styles of the active model and every time signature as enums."""
    from ml.generation.request import DENOMINATORS

    try:
        styles = runtime.model_styles()
    except ComposingUnavailable:
        styles = []
    signatures = [f"{n}/{d}" for d in DENOMINATORS for n in range(1, 33)]
    for name in ("CompositionRequest", "CompositionSettings"):
        properties = result.get("components", {}).get("schemas", {}).get(name, {}).get("properties", {})
        if styles and "style" in properties:
            properties["style"]["enum"] = styles
        if "time_signature" in properties:
            properties["time_signature"]["enum"] = signatures
    return result
