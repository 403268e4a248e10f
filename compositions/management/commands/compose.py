"""`manage.py compose`: write a piece from the command line, without the web server or the queue.

One option per control of ml.generation.request.GenerationRequest (--key, --time-signature, ...), checked
by the same code as the site and the API, so the messages match.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from compositions import runtime
from compositions.errors import ComposingUnavailable, RequestInvalid
from ml.generation.request import CONTROLS
from ml.pipeline import (
    AUDIO_FORMATS,
    PipelineError,
    arrangement_of,
    compose,
    harmonise,
    piece_form,
    piece_report,
    render_piece,
)


def _numbered(path: Path, index: int, count: int) -> Path:
    """piece.mp3 stays as is for one variation; with several, piece-1.mp3, piece-2.mp3, ..."""
    return path if count == 1 else path.with_name(f"{path.stem}-{index + 1}{path.suffix}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}") from exc


def _option(name: str, cli: str) -> str:
    return cli or "--" + name.replace("_", "-")


class Command(BaseCommand):
    help = "Compose a piece with the active model and write it as MP3 or WAV (and MIDI)."

    def add_arguments(self, parser: CommandParser) -> None:
        for name, control in CONTROLS.items():
            choices = f" ({', '.join(value for value, _ in control.choices[:12])})" if control.kind == "choice" \
                and name != "instrument" else ""
            parser.add_argument(_option(name, control.cli), dest=name, metavar=name.upper(),
                                help=f"{control.label}: {control.help}{choices}")
        parser.add_argument("--out", type=Path, required=True, help="audio file to write: .mp3 or .wav")
        parser.add_argument("--midi", type=Path, help="also keep the MIDI file here")
        parser.add_argument("--continue", type=Path, dest="primer", metavar="FILE.mid",
                            help="a MIDI file for the piece to continue")
        parser.add_argument("--harmonise", type=Path, metavar="FILE.mid",
                            help="a melody (or a piece whose top line is the tune) to write voices under")
        parser.add_argument("--timings", action="store_true",
                            help="print a JSON line of where the time went (start, model load, generate, render)")

    def handle(self, *args: Any, **options: Any) -> None:
        timings = {"start": round(time.time() - psutil.Process().create_time(), 3)}  # interpreter, Django, imports
        lap = time.perf_counter()
        out: Path = options["out"]
        if out.suffix.lower() not in AUDIO_FORMATS:
            raise CommandError(f"--out must end in .mp3 or .wav, not {out.name!r}.")
        params = {name: options[name] for name in CONTROLS if options.get(name) is not None}
        if options["primer"] is not None and options["harmonise"] is not None:
            raise CommandError("Give --continue or --harmonise, not both.")
        primer_midi = _read(options["primer"]) if options["primer"] is not None else None
        melody = None
        if options["harmonise"] is not None:
            from ml.data.notes import MidiError

            try:
                melody = runtime.primer_from_midi(_read(options["harmonise"]))
            except MidiError as exc:
                raise CommandError(f"--harmonise: {exc}") from exc
        try:
            request = runtime.validated_request(params, primer_midi=primer_midi)
            with tqdm(total=100, unit="%", desc="Generating") as bar:

                def progress(fraction: float) -> None:
                    bar.update(max(0, round(fraction * 100) - bar.n))

                # One piece, then the process ends: the NumPy engine starts at once, where compiling
                # the Keras steps (and importing TensorFlow) would cost more than they save.
                generator = runtime.get_generator(engine="numpy")
                generator.load()
                timings["model_load"], lap = round(time.perf_counter() - lap, 3), time.perf_counter()
                if melody is not None:
                    pieces = harmonise(generator, melody, request, progress=progress)
                else:
                    pieces = compose(generator, request, progress=progress, stage=bar.set_description)
                timings["generate"], lap = round(time.perf_counter() - lap, 3), time.perf_counter()
            renderer = runtime.get_renderer()
            for index, piece in enumerate(pieces):
                audio_path = _numbered(out, index, len(pieces))
                with tempfile.TemporaryDirectory(prefix="musicgen-") as tmp:
                    midi_path = _numbered(options["midi"], index, len(pieces)) if options["midi"] \
                        else Path(tmp) / "piece.mid"
                    loudness, ceiling = runtime.loudness_for(request.dynamics)
                    rendered = render_piece(renderer, arrangement_of(piece, request), midi_path=midi_path,
                                            audio_path=audio_path, loudness=loudness, ceiling=ceiling)
                    seconds = rendered.seconds
                form = piece_form(piece)
                phrases = " ".join(f"{p['letter']}{chr(8242) if p['varied'] else ''}({p['first_bar']}-{p['last_bar']})"
                                   for p in form.get("phrases", []))
                heard = (f", {rendered.loudness.integrated:.1f} LUFS, true peak {rendered.loudness.true_peak:.1f} dBTP"
                         if rendered.loudness else "")
                self.stdout.write(f"Wrote {audio_path} ({seconds:.1f} s, {len(piece.notes)} notes{heard}): "
                                  f"{form.get('bars', 0)} bars of {form.get('time_signature')} in {form['key']}, "
                                  f"form {form.get('form', '?')}: {phrases}")
                if melody is None:  # what was asked, and whether the piece did it
                    for check in piece_report(generator, piece, request):
                        verdict = {True: "met", False: "NOT MET", None: "-"}[check["met"]]
                        self.stdout.write(f"  {check['control']}: asked {check['asked']}; {check['did']}: {verdict}")
            timings["render_encode_report"] = round(time.perf_counter() - lap, 3)
            if options["timings"]:
                self.stdout.write("TIMINGS " + json.dumps({**timings, "notes": sum(len(p.notes) for p in pieces)}))
        except RequestInvalid as exc:
            raise CommandError(" ".join(f"{_label(field)}{message}" for field, messages in exc.errors.items()
                                        for message in messages)) from exc
        except (ComposingUnavailable, PipelineError) as exc:
            raise CommandError(f"{exc.reason} ({exc.detail})" if exc.detail else exc.reason) from exc


def _label(field: str) -> str:
    """ "--key: " before a field's message, so the user sees which option to fix."""
    if field in CONTROLS:
        return f"{_option(field, CONTROLS[field].cli)}: "
    return "--continue: " if field == "primer" else ""
