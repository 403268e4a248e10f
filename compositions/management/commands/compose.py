"""`manage.py compose`: write a piece from the command line, without the web server or the queue."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from compositions import engine


def _numbered(path: Path, index: int, count: int) -> Path:
    """piece.mp3 stays as is for one variation; with several, piece-1.mp3, piece-2.mp3, ..."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _pitch(text: str) -> int:
    """A MIDI note number ("60") or a note name ("C4", "F#3")."""
    import pretty_midi

    if text.strip().lstrip("-").isdigit():
        return int(text)
    try:
        return int(pretty_midi.note_name_to_number(text.strip()))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a MIDI note number nor a note name like C4") from exc


class Command(BaseCommand):
    help = "Compose a piece with the active model and write it as MP3 (and MIDI)."

    def add_arguments(self, parser: CommandParser) -> None:
        # Ranges are GenerationRequest's to check, so the messages match the site and the API.
        parser.add_argument("--style", required=True)
        parser.add_argument("--seconds", type=float, help="length in seconds, 5 to 600 (default 30)")
        parser.add_argument("--notes", type=int, help="length in notes, 8 to 4000, instead of --seconds")
        parser.add_argument("--out", type=Path, required=True, help="audio file to write: .mp3 or .wav")
        parser.add_argument("--midi", type=Path, help="also keep the MIDI file here")
        parser.add_argument("--seed", type=int)
        parser.add_argument("--tempo", type=float, dest="tempo_bpm", help="beats per minute, 20 to 300")
        parser.add_argument("--time-signature", dest="time_signature", help="e.g. 4/4, 3/4, 6/8")
        parser.add_argument("--key", help="any, C, C#, Db, ... B")
        parser.add_argument("--mode", help="major, minor, dorian or mixolydian")
        parser.add_argument("--pitch-low", type=_pitch, dest="pitch_low", help="lowest note: 36 or C2")
        parser.add_argument("--pitch-high", type=_pitch, dest="pitch_high", help="highest note: 84 or C6")
        parser.add_argument("--temperature", type=float, help="pitch sampling, above 0, at most 3")
        parser.add_argument("--timing-temperature", type=float, dest="timing_temperature",
                            help="rhythm sampling, above 0, at most 3")
        parser.add_argument("--top-k", type=int, dest="top_k", help="0 (off) to 128")
        parser.add_argument("--top-p", type=float, dest="top_p", help="above 0, at most 1")
        parser.add_argument("--dynamics", help="soft, medium, loud, crescendo or diminuendo")
        parser.add_argument("--instrument", type=int, help="General MIDI program, 0 to 127")
        parser.add_argument("--variations", type=int, help="1 to 4")
        parser.add_argument("--continue", type=Path, dest="primer", metavar="FILE.mid",
                            help="a MIDI file for the piece to continue")

    def handle(self, *args: Any, **options: Any) -> None:
        params = {name: options[name] for name in engine.REQUEST_FIELDS if options.get(name) is not None}
        if options["out"].suffix.lower() not in engine.AUDIO_FORMATS:
            raise CommandError(f"--out must end in .mp3 or .wav, not {options['out'].name!r}.")
        try:
            primer = None
            if options["primer"] is not None:
                try:
                    primer = engine.primer_from_midi(options["primer"].read_bytes())
                except OSError as exc:
                    raise CommandError(f"Cannot read {options['primer']}: {exc.strerror}") from exc
            request = engine.build_request(params, primer=primer)
            with tqdm(total=100, unit="%", desc="Generating") as bar:

                def progress(fraction: float) -> None:
                    bar.update(max(0, round(fraction * 100) - bar.n))

                composed = engine.compose(request, progress=progress, stage=bar.set_description)
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
