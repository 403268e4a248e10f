"""`make stress`: many requests at once against a whole live site; prints one JSON line of figures.

    python -m tests.stress --backend sqlite --requests 100 --users 10

The site runs as in tests/live.py (gunicorn, a two-worker qcluster, its own database). Every
request is sent at once from a pool of threads; the run waits until every piece has finished
and counts what was accepted, done, failed, claimed more than once, and the files written.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.live import ROOT, live_site


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--users", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each piece")
    parser.add_argument("--model", type=Path, default=ROOT / "ml" / "pretrained" / "default.keras")
    parser.add_argument("--style", default="chorale")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "musicgen.settings")

    with tempfile.TemporaryDirectory() as tmp, live_site(
        Path(tmp), backend=args.backend, model_path=args.model, QUOTA_ACTIVE_PIECES=str(args.requests),
        QUOTA_PIECES_PER_DAY=str(args.requests),
    ) as site:
        names = [f"stress{i}" for i in range(args.users)]
        site.add_users(names)
        apis = {name: site.api(name) for name in names}
        started = time.monotonic()

        def send(index: int) -> int:
            payload = {"style": args.style, "seconds": args.seconds, "seed": index}
            response = apis[names[index % args.users]].post(site.url + "/api/compositions/", json=payload, timeout=120)
            return response.status_code

        with ThreadPoolExecutor(max_workers=32) as pool:
            codes = list(pool.map(send, range(args.requests)))
        accepted = time.monotonic() - started
        rows = site.wait_until_finished(codes.count(202), timeout=3600)
        finished = time.monotonic() - started
        logs = site.log("cluster") + site.log("web")
        print(json.dumps({
            "backend": args.backend, "requests": args.requests, "users": args.users, "seconds": args.seconds,
            "answers": {str(code): codes.count(code) for code in sorted(set(codes))},
            "done": sum(row["status"] == "done" for row in rows),
            "failed": sum(row["status"] == "failed" for row in rows),
            "lost": codes.count(202) - len(rows),
            "claimed_more_than_once": sum(row["attempts"] > 1 for row in rows),
            "mp3_files": len(list((site.media / "mp3").iterdir())),
            "seconds_to_accept_all": round(accepted, 1),
            "seconds_to_finish_all": round(finished, 1),
            "database_is_locked_in_logs": logs.count("database is locked"),
        }))


if __name__ == "__main__":
    main()
