from __future__ import annotations

from django.apps import AppConfig


class CompositionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "compositions"

    def ready(self) -> None:
        from compositions import checks  # noqa: F401  (registers the system checks)
