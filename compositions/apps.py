from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def create_cache_tables(using: str = "default", **_: Any) -> None:
    """`migrate` makes the database cache's table too (sign-in counters and rates need it), so a
    deploy that runs only `migrate` has a working site; nothing happens where the cache is Redis."""
    from django.core.management import call_command

    call_command("createcachetable", database=using, verbosity=0)


class CompositionsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "compositions"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from compositions import checks  # noqa: F401  (registers the system checks)
        from compositions.worker import warm_up

        post_migrate.connect(create_cache_tables, sender=self, dispatch_uid="compositions.cache_tables")
        # Each django-q2 worker loads the model once, right after it is forked, not per job.
        post_spawn.connect(warm_up, dispatch_uid="compositions.warm_up")
