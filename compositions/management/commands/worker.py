"""`manage.py worker`: django-q2's cluster, stopped promptly and safely by SIGTERM or Ctrl-C.

`qcluster` stops by calling into multiprocessing from its signal handler; a second signal (Ctrl-C
and a supervisor's SIGTERM, or a signal sent to the whole process group) re-enters that handler
while the first holds a lock, and the process waits on it forever. Here the handler only records
the request, and the main loop stops the cluster: each worker finishes the piece it is writing if
that takes at most Q_STOP_GRACE_SECONDS; after that the workers still busy are killed, and their
pieces are queued again by the reconciler when a worker next starts (nothing is stored until a
piece is whole, so nothing is half-written).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the background workers (a django-q2 cluster); SIGTERM or Ctrl-C stops them within the grace period."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--grace", type=float, default=None,
                            help="seconds a piece in progress may take to finish after a stop is asked "
                                 "(default: Q_STOP_GRACE_SECONDS)")

    def handle(self, *args: Any, **options: Any) -> None:
        from django_q.cluster import Cluster

        grace = settings.Q_STOP_GRACE_SECONDS if options["grace"] is None else options["grace"]
        asked: list[int] = []

        def on_signal(signum: int, frame: FrameType | None) -> None:
            asked.append(signum)  # no locks in a signal handler: the loop below does the work

        cluster = Cluster()  # sets qcluster's own handlers, replaced here
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        cluster.start()
        while not asked:
            if not cluster.sentinel.is_alive():
                raise SystemExit(f"The worker cluster stopped by itself (exit code {cluster.sentinel.exitcode}).")
            time.sleep(0.2)
        logger.info("Stopping the workers: a piece in progress has %g s to finish", grace)
        killer = threading.Timer(grace, _kill_busy_workers, args=(cluster,))
        killer.daemon = True
        killer.start()
        started = time.monotonic()
        cluster.stop()  # the sentinel hands each worker a stop and waits for it
        killer.cancel()
        logger.info("Workers stopped after %.1f s", time.monotonic() - started)


def _kill_busy_workers(cluster: Any) -> None:
    """The grace period is over: kill the workers still writing (their pieces are queued again later)."""
    import psutil

    try:
        sentinel = psutil.Process(cluster.sentinel.pid)
        stat = cluster.stat
        workers = set(getattr(stat, "workers", []) or [])
        children = sentinel.children()
    except psutil.Error:
        return
    # The workers by the cluster's own report; any other child left (the monitor) goes too if that fails.
    busy = [child for child in children if child.pid in workers] or children
    for child in busy:
        logger.warning("Worker %s did not finish within the grace period; stopping it", child.pid)
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
