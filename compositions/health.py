"""What a load balancer or a monitor asks: can this web host serve, and are the workers alive?

Reads only, like the selectors: the web tier's own dependencies (database, shared cache), and the
workers as the shared state shows them (django-q2's per-cluster heartbeat in the broker, the queue,
and the oldest piece still waiting).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.core.cache import cache
from django.db import DatabaseError, connection
from django.utils import timezone

from compositions.models import CompositionVersion


@dataclass
class Probe:
    """One dependency: reachable or not, why not, and how long the question took."""

    ok: bool
    milliseconds: float
    error: str = ""


def _probe(check: Any) -> Probe:
    started = time.perf_counter()
    try:
        check()
    except Exception as exc:  # a health probe reports every failure instead of raising it
        return Probe(False, round((time.perf_counter() - started) * 1000, 1), f"{type(exc).__name__}: {exc}")
    return Probe(True, round((time.perf_counter() - started) * 1000, 1))


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _cache() -> None:
    cache.set("health:probe", 1, timeout=30)
    if cache.get("health:probe") != 1:
        raise RuntimeError("the cache did not keep a value")


@dataclass
class WebHealth:
    database: Probe
    cache: Probe

    @property
    def ok(self) -> bool:
        return self.database.ok and self.cache.ok

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing", "database": asdict(self.database),
                "cache": asdict(self.cache)}


def web_health() -> WebHealth:
    """The web tier can answer when its database and its shared cache (sign-in counters, rates) answer."""
    return WebHealth(database=_probe(_database), cache=_probe(_cache))


@dataclass
class Cluster:
    """One running `qcluster`, as it last reported itself to the broker (every few seconds)."""

    cluster_id: str
    host: str
    status: str
    workers: int
    started: str
    last_heartbeat: str
    seconds_since_heartbeat: float


@dataclass
class WorkersHealth:
    clusters: list[Cluster]
    queued_tasks: int | None  # waiting in the broker (None when the broker cannot be asked)
    queued_pieces: int  # versions of pieces waiting for a worker
    oldest_queued_seconds: float | None  # how long the oldest of them has waited
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.clusters) and not self.errors

    def to_dict(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "failing", "clusters": [asdict(c) for c in self.clusters],
                "queued_tasks": self.queued_tasks, "queued_pieces": self.queued_pieces,
                "oldest_queued_seconds": self.oldest_queued_seconds, "errors": self.errors}


def workers_health() -> WorkersHealth:
    """Every cluster that reported in the last few seconds, the queue's depth and the oldest wait.

    No cluster means no piece will be written: that is a failure even with an empty queue.
    """
    from django_q.brokers import get_broker
    from django_q.status import Stat

    errors: list[str] = []
    now = timezone.now()
    clusters: list[Cluster] = []
    queued_tasks: int | None = None
    try:
        broker = get_broker()
        queued_tasks = int(broker.queue_size())
        for stat in Stat.get_all(broker=broker):
            clusters.append(Cluster(
                cluster_id=str(stat.cluster_id), host=str(stat.host), status=str(stat.status),
                workers=len(stat.workers), started=stat.tob.isoformat() if stat.tob else "",
                last_heartbeat=stat.timestamp.isoformat(),
                seconds_since_heartbeat=round((now - stat.timestamp).total_seconds(), 1),
            ))
    except Exception as exc:  # the broker (Redis, or the database) not answering is what this reports
        errors.append(f"broker: {type(exc).__name__}: {exc}")
    if not clusters and not errors:
        errors.append("no worker cluster has reported in the last few seconds")
    queued_pieces, oldest = 0, None
    try:
        waiting = CompositionVersion.objects.filter(status=CompositionVersion.Status.PENDING)
        queued_pieces = waiting.count()
        first = waiting.order_by("created_at").values_list("created_at", flat=True).first()
        oldest = round((now - first).total_seconds(), 1) if first else None
    except DatabaseError as exc:
        errors.append(f"database: {exc}")
    return WorkersHealth(clusters=sorted(clusters, key=lambda c: (c.host, c.cluster_id)), queued_tasks=queued_tasks,
                         queued_pieces=queued_pieces, oldest_queued_seconds=oldest, errors=errors)
