"""`manage.py evaluate`: Evaluate a model against baselines on held-out data; writes JSON, Markdown and plots."""

from __future__ import annotations

from compositions.management.commands._passthrough import PassthroughCommand


class Command(PassthroughCommand):
    help = "Evaluate a model against baselines on held-out data; writes JSON, Markdown and plots."
    module = "ml.evaluation.evaluate"
