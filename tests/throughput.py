"""`make throughput`: pieces per minute with 1, 2 and 4 worker processes on this machine.

    python -m tests.throughput --workers 1,2,4 --pieces 16 --seconds 10 --out bench/throughput.json

For each count, a whole site (gunicorn, `manage.py worker` with that many processes, PostgreSQL and
Redis) with the shipped model: one warm-up piece per worker, then --pieces requests at once; the
clock runs from the first request to the last piece done (MP3 written; scores and loudness
follow-ups run too, on the same workers). A host with more cores is estimated from the best
per-core rate here, stated as an estimate: this machine has os.cpu_count() cores, shared with the
web server and the database.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.live import ROOT, live_site


def _run(workers: int, pieces: int, seconds: float, style: str, model: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, live_site(
        Path(tmp), backend="postgres", model_path=model, Q_WORKERS=str(workers),
        QUOTA_ACTIVE_PIECES=str(pieces + workers), QUOTA_PIECES_PER_DAY=str(10 * pieces),
    ) as site:
        site.add_users(["warm", "load"])

        def send(user: str, seed: int) -> int:
            response = site.api(user).post(site.url + "/api/v1/compositions/",
                                           json={"style": style, "seconds": seconds, "seed": seed}, timeout=120)
            return response.status_code

        assert [send("warm", n) for n in range(workers)] == [202] * workers
        site.wait_until_finished(workers, timeout=600, usernames=["warm"])
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            codes = list(pool.map(lambda n: send("load", 100 + n), range(pieces)))
        assert codes == [202] * pieces, codes
        rows = site.wait_until_finished(pieces, timeout=1800, usernames=["load"])
        elapsed = time.monotonic() - started
        done = sum(row["status"] == "done" for row in rows)
    return {"workers": workers, "pieces": pieces, "done": done, "seconds": round(elapsed, 1),
            "pieces_per_minute": round(done / elapsed * 60, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default="1,2,4", help="worker process counts, comma-separated")
    parser.add_argument("--pieces", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each piece")
    parser.add_argument("--style", default="chorale")
    parser.add_argument("--model", type=Path, default=ROOT / "ml" / "pretrained" / "default.keras")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "throughput.json")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "musicgen.settings")
    runs = [_run(int(w), args.pieces, args.seconds, args.style, args.model) for w in args.workers.split(",")]
    cores = os.cpu_count() or 1
    best = max(runs, key=lambda run: run["pieces_per_minute"])
    per_core = best["pieces_per_minute"] / min(cores, best["workers"])
    report = {
        "command": f"python -m tests.throughput --workers {args.workers} --pieces {args.pieces} "
                   f"--seconds {args.seconds:g} --style {args.style}",
        "machine_cores": cores, "piece_seconds": args.seconds, "style": args.style, "runs": runs,
        "per_core_pieces_per_minute": round(per_core, 2),
        "estimate": {str(n): round(per_core * n, 1) for n in (4, 8, 16, 32)},
        "estimate_note": "per-core rate of the best run here x cores, assuming one worker process per core and "
                         "the web server and database on other hosts: an estimate, not a measurement",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    for run in runs:
        print(f"{run['workers']} worker(s): {run['done']}/{run['pieces']} pieces of {args.seconds:g} s in "
              f"{run['seconds']} s = {run['pieces_per_minute']} pieces/minute")
    print(f"per core: {per_core:.2f} pieces/minute; estimated for 8 cores: {per_core * 8:.0f}, 16 cores: "
          f"{per_core * 16:.0f} (estimates)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
