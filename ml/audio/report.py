"""What a listener hears: each style at each dynamics setting, composed, rendered, normalised and
encoded as the site does, then measured on the MP3 (ffmpeg ebur128), with its voices and their
instruments read back from the MIDI file.

    python -m ml.audio.report --seconds 30 --out bench/loudness.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pretty_midi

from ml.audio.loudness import LoudnessTargets
from ml.audio.render import Renderer, find_soundfont
from ml.generation.generator import Generator
from ml.generation.request import DYNAMICS, GenerationRequest
from ml.pipeline import arrangement_of, render_piece


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("ml/pretrained/default.keras"))
    parser.add_argument("--styles", nargs="*")
    parser.add_argument("--dynamics", nargs="*", default=list(DYNAMICS))
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    generator = Generator(args.model)
    targets = LoudnessTargets()
    rows = []
    with Renderer(find_soundfont()) as renderer, tempfile.TemporaryDirectory() as tmp:
        for style in args.styles or generator.styles:
            for dynamics in args.dynamics:
                request = GenerationRequest(style=style, seconds=args.seconds, seed=args.seed, dynamics=dynamics)
                [piece] = generator.generate(request)
                started = time.perf_counter()
                midi, mp3 = Path(tmp) / "piece.mid", Path(tmp) / "piece.mp3"
                rendered = render_piece(renderer, arrangement_of(piece, request), midi_path=midi, audio_path=mp3,
                                        loudness=targets.for_dynamics(dynamics), ceiling=targets.ceiling)
                seconds = time.perf_counter() - started
                tracks = [(i.name, pretty_midi.program_to_instrument_name(i.program))
                          for i in pretty_midi.PrettyMIDI(str(midi)).instruments]
                heard = rendered.loudness
                row = {"style": style, "dynamics": dynamics, "target_lufs": targets.for_dynamics(dynamics),
                       **(heard.to_dict() if heard else {}), "audio_seconds": round(rendered.seconds, 2),
                       "render_seconds": round(seconds, 2), "tracks": tracks}
                rows.append(row)
                print(f"{style:15} {dynamics:11} target {row['target_lufs']:6.1f}  "
                      f"{row.get('integrated_lufs', float('nan')):6.1f} LUFS  "
                      f"true peak {row.get('true_peak_dbtp', float('nan')):5.1f} dBTP  "
                      f"LRA {row.get('range_lu', float('nan')):4.1f}  {rendered.seconds:5.1f} s audio, "
                      f"rendered in {seconds:.2f} s  " + ", ".join(f"{n}: {p}" for n, p in tracks))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
