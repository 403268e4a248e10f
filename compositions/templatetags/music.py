"""Template filters for music words."""

from __future__ import annotations

from django import template

from compositions import models

register = template.Library()


@register.filter
def style_label(style: str) -> str:
    """ "string-quartet" as "String quartet"."""
    return models.style_label(style)
