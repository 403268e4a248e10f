"""Template filters for music words."""

from __future__ import annotations

from django import template

from ml.generation import request

register = template.Library()


@register.filter
def style_label(style: str) -> str:
    """ "string-quartet" as "String quartet"."""
    return request.style_label(style)
