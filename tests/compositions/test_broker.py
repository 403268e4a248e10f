"""REDIS_URL selects django-q2's Redis broker, and tasks really travel through Redis.

The settings are evaluated in a child process with REDIS_URL set, because this process
has already configured Django (and django-q2's Conf) without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REDIS_URL = "redis://127.0.0.1:6379/15"  # database 15: away from anything a developer keeps in 0
ROOT = Path(__file__).resolve().parents[2]

ROUND_TRIP = """
import json, sys
import django
django.setup()
from django.conf import settings
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

broker = get_broker(sys.argv[1])
task = {"id": sys.argv[1], "func": "math.copysign", "args": (2, -1)}
try:
    broker.enqueue(SignedPackage.dumps(task))
    (ack_id, payload), = broker.dequeue()
    broker.acknowledge(ack_id)
    print(json.dumps({
        "q_cluster": {k: settings.Q_CLUSTER.get(k) for k in ("redis", "orm")},
        "broker": f"{type(broker).__module__}.{type(broker).__name__}",
        "task": SignedPackage.loads(payload),
        "left": broker.queue_size(),
    }))
finally:
    broker.delete_queue()
"""


def _redis_answers() -> bool:
    import redis

    try:
        return bool(redis.from_url(REDIS_URL, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def test_redis_url_selects_the_redis_broker_and_a_task_round_trips() -> None:
    if not _redis_answers():
        pytest.skip(f"Redis does not answer at {REDIS_URL} (CI starts one; locally: redis-server)")
    queue = f"test-{uuid.uuid4().hex[:12]}"
    env = {**os.environ, "REDIS_URL": REDIS_URL, "DJANGO_SETTINGS_MODULE": "musicgen.settings"}
    result = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP, queue], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])

    assert report["q_cluster"] == {"redis": REDIS_URL, "orm": None}
    assert report["broker"] == "django_q.brokers.redis_broker.Redis"
    assert report["task"] == {"id": queue, "func": "math.copysign", "args": [2, -1]}  # JSON made the tuple a list
    assert report["left"] == 0


def test_without_redis_url_the_database_is_the_broker() -> None:
    from django.conf import settings

    if os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is set for this run")
    assert settings.Q_CLUSTER.get("orm") == "default"
    assert "redis" not in settings.Q_CLUSTER
