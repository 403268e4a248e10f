"""The key each training piece is labelled with, against the key its score writes.

A piece's key label (`ml.data.notes.piece_key`) moves the piece into key-relative space for the
network, says which mode it reads, and decides how the piece is counted to close. This checks the
label against what the score itself says, which neither label reads:

- a key the score names (an ABC tune's `K:` field, a MusicXML key with its mode): the label's tonic is
  the named tonic (a mode names its final: `K:Ador` is A);
- a bare key signature: the label is the signature's major key or its relative minor.

Both labels are read from the notes as the dataset reads them: the profile estimate alone
(`estimate_key`, the labels before dataset extractor version 8) and `piece_key`, the estimate confirmed
by the close. Modal music is where a bare signature misleads: a Dorian piece on D without flats is
"C major or A minor" by its signature and D by its final.

    python -m ml.evaluation.key_labels --pieces 120 --out reports/key_labels.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from ml.data.notes import NoteSequence, estimate_key, piece_key

LABELS = {"estimate": estimate_key, "piece_key": piece_key}


def written_key(score: Any) -> tuple[str, int, int | None] | None:
    """What the score's first key signature says: ("named", tonic, None) where it names a key or mode,
    ("signature", major tonic, relative minor tonic) where it is a bare signature; None without one."""
    from music21 import key as m21key

    parts = list(getattr(score, "parts", [])) or [score]
    found = list(parts[0].flatten().getElementsByClass("KeySignature"))
    if not found:
        return None
    signature = found[0]
    if isinstance(signature, m21key.Key):
        return "named", signature.tonic.pitchClass, None
    return "signature", signature.asKey("major").tonic.pitchClass, signature.asKey("minor").tonic.pitchClass


def agrees(label: tuple[int, str], written: tuple[str, int, int | None]) -> bool:
    """Whether a (tonic, mode) label says what the score writes (`written_key`)."""
    kind, tonic, minor = written
    if kind == "named":
        return label[0] == tonic
    return label in ((tonic, "major"), (minor, "minor"))


def check(pieces: list[tuple[NoteSequence, tuple[str, int, int | None]]]) -> dict[str, Any]:
    """Per kind of written key: how many pieces, and how many each label agrees with."""
    counts: Counter[str] = Counter()
    for seq, written in pieces:
        counts[f"{written[0]}:pieces"] += 1
        for name, label in LABELS.items():
            counts[f"{written[0]}:{name}"] += agrees(label(seq), written)
    report: dict[str, Any] = {}
    for kind in ("named", "signature"):
        n = counts[f"{kind}:pieces"]
        if n:
            report[kind] = {"pieces": n, **{name: round(counts[f"{kind}:{name}"] / n, 3) for name in LABELS}}
    return report


def corpus_report(pieces_per_style: int, seed: int = 0) -> dict[str, Any]:
    """`check` over up to `pieces_per_style` corpus pieces of each style, drawn at random."""
    from ml.data.datasets import CORPUS_STYLES, corpus_jobs, notes_from_score, parse_score

    rng = np.random.default_rng(seed)
    report: dict[str, Any] = {}
    for style in CORPUS_STYLES:
        jobs = corpus_jobs([style])
        chosen = [jobs[i] for i in sorted(rng.choice(len(jobs), min(pieces_per_style, len(jobs)), replace=False))]
        pieces = []
        skipped = 0
        for path, number, _ in chosen:
            try:  # one parse: the written key is read before the notes (repeats written out) are
                score = parse_score(path, number)
                written = written_key(score)
                seq = notes_from_score(score, CORPUS_STYLES[style][2])
            except Exception:  # music21's parsers raise anything; the import skips these pieces too
                skipped += 1
                continue
            if written is None or not len(seq):
                skipped += 1
                continue
            pieces.append((seq, written))
        report[style] = {**check(pieces), "skipped": skipped}
        print(style, json.dumps(report[style]), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Key labels against the keys the scores write.")
    parser.add_argument("--pieces", type=int, default=120, help="corpus pieces per style, drawn at random")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write the report here as JSON")
    args = parser.parse_args(argv)
    if args.pieces < 1:
        print("--pieces must be at least 1", file=sys.stderr)
        return 2
    report = corpus_report(args.pieces, args.seed)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
