"""The health endpoints a load balancer and a monitor ask: what they report, and that they fail when they should."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from compositions.models import Composition, CompositionVersion


def test_the_web_host_is_healthy_when_database_and_cache_answer_whatever_host_name_is_asked(
    client: Client, db: None, settings: Any,
) -> None:
    settings.ALLOWED_HOSTS = ["music.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    response = client.get("/health/", HTTP_HOST="10.1.2.3:8000")  # a load balancer asks by address, over HTTP
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok" and body["database"]["ok"] and body["cache"]["ok"]
    assert "no-store" in response["Cache-Control"]
    assert client.post("/health/").status_code == 405
    # Anything else still goes through the host check.
    assert client.get("/", HTTP_HOST="10.1.2.3:8000").status_code == 400


def test_the_web_host_is_unhealthy_when_its_shared_cache_is_gone(client: Client, db: None, settings: Any) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}  # nothing listens there
    response = client.get("/health/")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "failing" and body["database"]["ok"] and not body["cache"]["ok"]
    assert "Connection" in body["cache"]["error"]


def test_without_a_worker_cluster_the_workers_are_unhealthy_and_the_wait_is_reported(
    client: Client, user: User, composition_factory: Callable[..., Composition],
) -> None:
    waiting = composition_factory(user, status="pending")
    composition_factory(user, status="done")
    CompositionVersion.objects.filter(composition=waiting).update(created_at=timezone.now() - timedelta(minutes=5))
    response = client.get("/health/workers/")
    assert response.status_code == 503
    body = response.json()
    assert body["clusters"] == [] and body["errors"] == ["no worker cluster has reported in the last few seconds"]
    assert body["queued_pieces"] == 1 and 299 <= body["oldest_queued_seconds"] <= 320
