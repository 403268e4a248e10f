"""`manage.py import_dataset`: the music21 corpus, a MAESTRO download or a MIDI folder, into a dataset file."""

from __future__ import annotations

from compositions.management.commands._passthrough import PassthroughCommand


class Command(PassthroughCommand):
    help = "Import the music21 corpus, a MAESTRO download or a folder of MIDI files into a dataset file."
    module = "ml.data.datasets"
