"""`make load`: read traffic at 10, 50 and 100 concurrent users against gunicorn, PostgreSQL and Redis.

    python -m tests.load --users 10,50,100 --seconds 8 --pieces 300 --think 1 --out bench/load.json

A production-like site (DEBUG off, static files collected, gunicorn with --web-workers processes
of 8 threads) on its own PostgreSQL database and Redis, holding --pieces public pieces and a
reader with 50 of their own. Each endpoint is loaded on its own for --seconds per level: by
listeners in threads who arrive over the first --think seconds and wait about that long between
requests, as people do; with --think 0 by wrk, back to back, which measures the most the site
serves. wrk runs on the same 2 cores as the site, so the
figures are a floor for a machine that only serves. Also measured: the database queries one
status poll costs (a page polling 100 pieces makes 100 of them). The site, its database and its
files are removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.live import ROOT, LiveSite, live_site

WRK_SCRIPT = """
local token = os.getenv("LOAD_TOKEN")
if token and token ~= "" then wrk.headers["Authorization"] = "Token " .. token end
local think = tonumber(os.getenv("LOAD_THINK_MS") or "0")
if think > 0 then
  -- each connection is a listener who reads for 0.5x to 1.5x the think time between requests
  function delay() return math.random(math.floor(think / 2), math.floor(think * 3 / 2)) end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, "write": %d, "status": %d, '
    .. '"timeout": %d, "p50_us": %d, "p95_us": %d, "p99_us": %d, "max_us": %d}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(95), latency:percentile(99), latency.max))
end
"""

SEED = """
import json, os
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from compositions.models import Composition, CompositionVersion
from ml.generation.request import GenerationRequest

mp3 = default_storage.save("mp3/load.mp3", ContentFile(b"ID3" + os.urandom(480_000)))  # a 30-s piece's size
midi = default_storage.save("midi/load.mid", ContentFile(b"MThd" + os.urandom(2000)))
params = GenerationRequest.from_dict({"style": "chorale", "seconds": 30}).to_dict()
owners = [User.objects.create_user(f"composer{n}", password="x-Long-pass-1") for n in range(5)]
reader = User.objects.get(username="reader")
ids = []
for n in range(PIECES + 50):
    owner = reader if n >= PIECES else owners[n % len(owners)]
    piece = Composition.objects.create(user=owner, style="chorale", title=f"Piece {n}",
                                       visibility="private" if owner == reader else "public", play_count=n % 17)
    version = CompositionVersion.objects.create(
        composition=piece, number=1, params=params, batch_id=piece.batch_id, status="done", progress=100,
        midi_file=midi, mp3_file=mp3, duration_seconds=30.0, notes_json=[[60 + n % 12, 0.0, 0.5, 80]] * 64)
    piece.current_version = version
    piece.save(update_fields=["current_version"])
    if owner == reader:
        ids.append(str(piece.public_id))
print(json.dumps(ids))
"""

QUERIES_PER_POLL = """
import json
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from compositions.models import Composition

client = Client(HTTP_HOST="127.0.0.1")
client.force_login(User.objects.get(username="reader"))
pieces = list(Composition.objects.filter(user__username="reader").values_list("public_id", flat=True)[:100])
client.get(f"/compositions/{pieces[0]}/status.json")  # the session is read once per process either way
with CaptureQueriesContext(connection) as polls:
    codes = {client.get(f"/compositions/{public_id}/status.json").status_code for public_id in pieces}
print(json.dumps({"pieces": len(pieces), "codes": sorted(codes), "queries": len(polls.captured_queries),
                  "queries_per_poll": len(polls.captured_queries) / len(pieces)}))
"""


def _wrk(url: str, users: int, seconds: float, token: str, script: Path, think: float) -> dict[str, Any]:
    command = ["wrk", f"-t{min(2, users)}", f"-c{users}", f"-d{seconds:g}s", "--timeout", "10s", "-s", str(script),
               url]
    env = {**os.environ, "LOAD_TOKEN": token, "LOAD_THINK_MS": str(int(think * 1000))}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=seconds + 60, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    errors = sum(figures[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "requests_per_second": round(figures["requests"] / (figures["duration_us"] / 1e6), 1),
        "p50_ms": figures["p50_us"] / 1000, "p95_ms": figures["p95_us"] / 1000, "p99_ms": figures["p99_us"] / 1000,
        "max_ms": figures["max_us"] / 1000, "requests": figures["requests"], "errors": errors,
        "error_kinds": {k: figures[k] for k in ("connect", "read", "write", "status", "timeout") if figures[k]},
        "megabytes": round(figures["bytes"] / 1e6, 1),
    }


def _listeners(url: str, users: int, seconds: float, token: str, think: float) -> dict[str, Any]:
    """`users` listeners in threads, each arriving at a random moment of the first think time, then
    asking, reading for 0.5x to 1.5x `think` seconds, and asking again until `seconds` are over.

    wrk starts every connection at the same instant, a burst no audience makes, and it would be
    most of the slowest 5% of a short run: this client is the one for the latency at N users;
    wrk (think 0) measures what the site can serve at most.
    """
    import random
    import threading

    import requests

    latencies: list[float] = []
    errors: dict[str, int] = {}
    lock = threading.Lock()
    started = time.monotonic()
    deadline = started + seconds

    def listener(index: int) -> None:
        rng = random.Random(index)
        session = requests.Session()
        if token:
            session.headers["Authorization"] = f"Token {token}"
        time.sleep(rng.uniform(0, think))
        while time.monotonic() < deadline:
            sent = time.perf_counter()
            try:
                response = session.get(url, timeout=10)
                _ = response.content
                kind = "" if response.status_code < 400 else f"status {response.status_code}"
            except requests.RequestException as exc:
                kind = type(exc).__name__
            elapsed = time.perf_counter() - sent
            with lock:
                if kind:
                    errors[kind] = errors.get(kind, 0) + 1
                else:
                    latencies.append(elapsed)
            time.sleep(think * rng.uniform(0.5, 1.5))

    threads = [threading.Thread(target=listener, args=(n,), daemon=True) for n in range(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 30)
    wall = time.monotonic() - started
    ordered = sorted(latencies)

    def percentile(p: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] * 1000, 1) if ordered else 0.0

    return {"requests_per_second": round((len(latencies) + sum(errors.values())) / wall, 1),
            "p50_ms": percentile(50), "p95_ms": percentile(95), "p99_ms": percentile(99),
            "max_ms": round(ordered[-1] * 1000, 1) if ordered else 0.0, "requests": len(latencies),
            "errors": sum(errors.values()), "error_kinds": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", default="10,50,100", help="concurrency levels, comma-separated")
    parser.add_argument("--seconds", type=float, default=8.0, help="per endpoint and level")
    parser.add_argument("--pieces", type=int, default=300, help="public pieces in the gallery")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--think", type=float, default=1.0,
                        help="mean seconds each user waits between requests (0: back to back, the saturation test)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "load.json")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk, or `make load`)")
    levels = [int(level) for level in args.users.split(",")]
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "musicgen.settings")

    with tempfile.TemporaryDirectory() as tmp:
        static = Path(tmp) / "static"
        (Path(tmp) / "site").mkdir()
        production = {
            "DEBUG": "false", "SECRET_KEY": "load-" + os.urandom(24).hex(), "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false", "SECURE_COOKIES": "false", "SECURE_HSTS_SECONDS": "0",
            "STATIC_ROOT": str(static), "DB_CONN_MAX_AGE": "60", "WEB_WORKERS": str(args.web_workers),
        }
        with live_site(Path(tmp) / "site", backend="postgres", model_path=ROOT / "ml" / "pretrained" / "default.keras",
                       cluster=False, **production) as site:
            site.manage("collectstatic", "--noinput")
            _restart_web(site)
            site.add_users(["reader"])
            ids = site.python(SEED.replace("PIECES", str(args.pieces)))
            token = site.users["reader"]
            endpoints = {
                "home": ("/", ""),
                "gallery": ("/gallery/?page=2", ""),
                "api_list": ("/api/v1/compositions/", token),
                "api_detail": (f"/api/v1/compositions/{ids[0]}/", token),
                "mp3": (f"/api/v1/compositions/{ids[1]}/audio.mp3", token),
            }
            script = Path(tmp) / "report.lua"
            script.write_text(WRK_SCRIPT)
            results: dict[str, dict[str, Any]] = {}
            for users in levels:
                for name, (path, auth) in endpoints.items():
                    if args.think:
                        row = _listeners(site.url + path, users, args.seconds, auth, args.think)
                    else:
                        row = _wrk(site.url + path, users, args.seconds, auth, script, args.think)
                    results.setdefault(name, {})[str(users)] = row
                    time.sleep(1)
            polls = site.python(QUERIES_PER_POLL)
    report = {
        "what": ("listeners in threads, arriving over the first think time" if args.think else "wrk") +
                " per endpoint and level; the load generator shares the site's 2 cores",
        "users": f"each user (a connection) waits {args.think / 2:g}-{args.think * 3 / 2:g} s between requests"
                 if args.think else "each user sends its next request as soon as the last is answered",
        "command": f"python -m tests.load --users {args.users} --seconds {args.seconds:g} --pieces {args.pieces} "
                   f"--web-workers {args.web_workers} --think {args.think:g}",
        "site": f"gunicorn {args.web_workers} processes x 8 threads, PostgreSQL, Redis, DEBUG off, "
                f"{args.pieces} public pieces",
        "endpoints": results, "status_poll": polls,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'endpoint':<11} {'users':>5} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for name, by_level in results.items():
        for level, row in by_level.items():
            print(f"{name:<11} {level:>5} {row['requests_per_second']:>8} {row['p50_ms']:>7.1f} {row['p95_ms']:>7.1f} "
                  f"{row['p99_ms']:>7.1f} {row['errors']:>6}")
    print(f"status poll: {polls['queries_per_poll']:.1f} queries per poll over {polls['pieces']} pieces")
    print(f"wrote {args.out}")


def _restart_web(site: LiveSite) -> None:
    """Start gunicorn again now that the static files' manifest exists (DEBUG off needs it)."""
    from tests.live import _kill_group

    assert site.web is not None
    _kill_group(site.web)
    site.start_web()


if __name__ == "__main__":
    main()
