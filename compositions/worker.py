"""A worker process's start: django-q2's post_spawn, after the fork, before the first task."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import DatabaseError

from compositions import runtime
from compositions.errors import ComposingUnavailable
from compositions.services.reconciling import composition_reconcile

logger = logging.getLogger(__name__)


def warm_up(**_: object) -> None:
    """Prepare a freshly spawned worker: reconcile, then load and compile the model.

    Reconciling here means that pieces a crashed cluster left behind are queued again as soon as
    a worker is back. What the site's state can explain is logged and the worker starts anyway:
    the database not answering (the schedule reconciles again within a minute), and a missing or
    broken model file (each task then fails with that reason). Anything else is a bug, and raises.
    """
    # In sync mode django-q2 runs its worker loop inside the caller for every task: no worker to warm.
    if settings.Q_SYNC:
        return
    try:
        composition_reconcile()
    except DatabaseError:
        logger.warning("Could not reconcile compositions at worker start", exc_info=True)
    if not settings.Q_WARMUP:
        return
    from ml.pipeline import PipelineError, failure_reason

    try:
        generator = runtime.get_generator()
        with failure_reason("The model file is broken"):
            generator.load()
    except (ComposingUnavailable, PipelineError) as exc:
        logger.warning("Worker started without the music model: %s (%s)", exc, exc.detail)
        return
    # Loaded: compiling the first step runs the network, and a failure there is a bug to see.
    generator.warm_up()
