from __future__ import annotations

from django.apps import AppConfig


class CompositionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "compositions"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from compositions import checks  # noqa: F401  (registers the system checks)
        from compositions.worker import warm_up

        # Each django-q2 worker loads the model once, right after it is forked, not per job.
        post_spawn.connect(warm_up, dispatch_uid="compositions.warm_up")
