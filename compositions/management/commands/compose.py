"""`manage.py compose`: write a piece from the command line, without the web server or the queue."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from compositions import engine


def _numbered(path: Path, index: int, count: int) -> Path:
    """piece.mp3 stays as is for one variation; with several, piece-1.mp3, piece-2.mp3, ..."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


class Command(BaseCommand):
    help = "Compose a piece with the active model and write it as MP3 (and MIDI)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--style", required=True)
        parser.add_argument("--seconds", type=float, required=True)
        parser.add_argument("--out", type=Path, required=True, help="MP3 file to write")
        parser.add_argument("--midi", type=Path, help="also keep the MIDI file here")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--tempo", type=float, dest="tempo_bpm", help="beats per minute")
        parser.add_argument("--key", help="any, C, C#, Db, ... B")
        parser.add_argument("--mode", choices=["major", "minor"])
        parser.add_argument("--temperature", type=float)
        parser.add_argument("--variations", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        params = {name: options[name] for name in engine.REQUEST_FIELDS if options.get(name) is not None}
        try:
            request = engine.build_request(params)
            with tqdm(total=100, unit="%", desc="Generating") as bar:

                def progress(fraction: float) -> None:
                    bar.update(max(0, round(fraction * 100) - bar.n))

                composed = engine.compose(request, progress=progress)
            for index, piece in enumerate(composed.pieces):
                mp3_path = _numbered(options["out"], index, len(composed.pieces))
                with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
                    midi_path = (
                        _numbered(options["midi"], index, len(composed.pieces))
                        if options["midi"]
                        else Path(tmp) / "piece.mid"
                    )
                    seconds = engine.render(piece.notes, midi_path=midi_path, mp3_path=mp3_path)
                self.stdout.write(f"Wrote {mp3_path} ({seconds:.1f} s, {len(piece.notes)} notes)")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except engine.CompositionFailed as exc:
            raise CommandError(f"{exc.reason} ({exc.detail})" if exc.detail else exc.reason) from exc
