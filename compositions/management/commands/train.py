"""`manage.py train`: Train the note model (python -m ml.model.train --help for the options)."""

from __future__ import annotations

from compositions.management.commands._passthrough import PassthroughCommand


class Command(PassthroughCommand):
    help = "Train the note model (python -m ml.model.train --help for the options)."
    module = "ml.model.train"
