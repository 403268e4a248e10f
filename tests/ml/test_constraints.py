"""Constraints as objects: the output they gave before they were objects, and each switch's effect."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ml.data.notes import scale_pitch_classes
from ml.generation.constraints import (
    CONSTRAINTS,
    At,
    KeyScale,
    Register,
    build_constraints,
    by_rank_without_parallels,
    completes_without_parallels,
    no_parallels,
)
from ml.generation.form import plan_form
from ml.generation.generator import Generator
from ml.generation.piece import GeneratedPiece
from ml.generation.request import GenerationRequest

PRETRAINED = Path(__file__).resolve().parents[2] / "ml" / "pretrained" / "default.keras"


def digest(pieces: list[GeneratedPiece]) -> str:
    h = hashlib.sha256()
    for piece in pieces:
        seq = piece.notes
        for values in (seq.pitch, seq.step, seq.duration, seq.velocity):
            h.update(np.asarray(values, np.float64).tobytes())
        h.update(str(piece.plan.letters if piece.plan else None).encode())
        h.update(str(piece.key).encode())
    return h.hexdigest()[:16]


@pytest.fixture(scope="module")
def shipped() -> Generator:
    generator = Generator(PRETRAINED)
    generator.load()
    return generator


# Hashes of the pieces the shipped model writes for one request per style, one with a key, a metre
# and two variations, and one with the guards off: a change to the sampler or the constraints that
# changes the notes shows here. First pinned when the rules became constraint objects (commit
# 6fdce08: the objects wrote the same notes as the sampler before them). Changed on purpose since:
# the chorales' voices keep the singers' ranges; then (with "Music that passes for its style") a
# piece is whole phrases (of about 16 beats) with the style's tempo fitted to the length, chorales
# are in bar form, the style's own metre is drawn when none is asked for, the key makes notes
# outside its scale rarer instead of forbidding them (the leading note likelier before a cadence in
# minor), the quartets get a dynamic marking per phrase, a return's new ending starts on another
# note; and the shipped model is the third (the retraining), sampled at temperature 1.0, top-p 1.0; then
# a chorale in 4/4 closes its phrases on beat 3, the network is told of inner cadences only in styles
# that marked them in training, the final dominant sounds its leading note, quartet dynamics move per
# phrase with a swell, and a single line keeps to its register; then the fourth model (the close
# learnt, the final cadence told apart), and outside chorales a close in major drawn to the tonic
# (a single line's last note harder), and a chorale in 3/4 phrases in four bars; then the close drawn per
# piece from the closes of the style's training pieces in its mode (these chorale, fiddle and Renaissance
# requests drew another close than the old rule's; a D minor asked for still closes V-I, as before); then
# passing eighths in the voices of chorales, Renaissance pieces and quartets (the `passing` constraint);
# then a key nobody asked for pulls weakly (`KeyScale`, DRAWN_KEY; the fiddle and folk tunes here stay as
# they were); then the file's keys and closes counted in the key each training piece closes in
# (`piece_key`: these chorale, folk and quartet requests draw another key or close).
BEFORE_THE_OBJECTS = {
    "chorale": "b4f5ced28278749c",
    "fiddle": "ad2cc0794ce2986a",
    "folk": "9c9b054d4426a348",
    "renaissance": "35cfb8636a8e46ac",
    "string-quartet": "42bea1ab7c40812e",
}


@pytest.mark.parametrize("style", sorted(BEFORE_THE_OBJECTS))
def test_constraint_objects_write_the_same_notes_as_the_sampler_before_them(shipped: Generator, style: str) -> None:
    pieces = shipped.generate(GenerationRequest(style=style, seconds=12, seed=1))
    assert digest(pieces) == BEFORE_THE_OBJECTS[style]


def test_a_key_a_metre_and_variations_are_unchanged_by_the_objects_too(shipped: Generator) -> None:
    request = GenerationRequest(style="chorale", seconds=12, seed=2, key="D", mode="minor", time_signature=(3, 4),
                                variations=2)
    assert digest(shipped.generate(request)) == "e0f6efb95f64f5e1"
    guards_off = Generator(PRETRAINED, off=("loop", "cadence", "voice", "metre"))
    pieces = guards_off.generate(GenerationRequest(style="string-quartet", seconds=12, seed=3))
    assert digest(pieces) == "e5b0e388f1a31e80"  # its drawn key counted as above


def test_every_constraint_has_a_name_a_description_and_a_switch() -> None:
    assert set(CONSTRAINTS) == {"key", "range", "register", "repeats", "metre", "cadence", "voice", "loop", "chords",
                                "melody", "drift", "passing"}
    for name, cls in CONSTRAINTS.items():
        assert cls.name == name and cls.describes
    assert [c.name for c in build_constraints(frozenset({"voice", "loop"}))] == ["key", "range", "register", "repeats",
                                                                               "metre", "cadence"]
    with pytest.raises(ValueError, match="Unknown constraint colour"):
        Generator(PRETRAINED, off=("colour",))


Pieces = list[GeneratedPiece]


def _both(shipped: Generator, name: str, request: GenerationRequest) -> tuple[Pieces, Pieces]:
    """The request with every constraint on, and with `name` off (the same weights, loaded once)."""
    on = shipped.generate(request)
    shipped.off = frozenset({name})
    try:
        off = shipped.generate(request)
    finally:
        shipped.off = frozenset()
    assert digest(on) != digest(off), f"switching {name} off changed nothing"
    return on, off


def _outside(pieces: Pieces, scale: frozenset[int]) -> float:
    pitches = [int(p) % 12 for piece in pieces for p in piece.notes.pitch]
    return sum(p not in scale for p in pitches) / len(pitches)


def test_the_key_makes_notes_outside_the_scale_rarer_and_its_switch_leaves_them_to_the_network(
        shipped: Generator) -> None:
    request = GenerationRequest(style="string-quartet", seconds=20, seed=5, key="F#", mode="major", variations=2)
    on, off = _both(shipped, "key", request)
    scale = scale_pitch_classes(6, "major")
    assert _outside(on, scale) < _outside(off, scale)


def _key_batch(mode: str, key: str = "C", plan_bars: int = 8) -> tuple[SimpleNamespace, SimpleNamespace]:
    plan = plan_form("AB", phrase_bars=4, total_bars=plan_bars, bar_beats=4.0)
    batch = SimpleNamespace(request=SimpleNamespace(key=key), plan=plan, chords=None)
    return batch, SimpleNamespace(mode=mode)


def test_a_note_outside_the_key_is_made_rarer_not_forbidden() -> None:
    batch, line = _key_batch("major")
    bias = KeyScale().bias(batch, line, At(onset=2.0, in_chord=False, voice=0))  # type: ignore[arg-type]
    assert bias is not None and np.isfinite(bias).all()
    assert (bias[60 + np.array([0, 2, 4, 5, 7, 9, 11])] == 0).all()  # C major's scale: as the network has it
    assert (bias[60 + np.array([1, 3, 6, 8, 10])] < 0).all()  # the others: rarer, still possible


def test_a_key_nobody_asked_for_pulls_weakly_and_leaves_the_raised_fourth_free() -> None:
    asked, line = _key_batch("minor")
    drawn, _ = _key_batch("minor", key="any")
    at = At(onset=9.0, in_chord=False, voice=0)  # the bar before a cadence
    strong = KeyScale().bias(asked, line, at)  # type: ignore[arg-type]
    weak = KeyScale().bias(drawn, line, at)  # type: ignore[arg-type]
    assert strong is not None and weak is not None
    assert (weak[60 + np.array([0, 2, 3, 5, 7, 8, 10, 11])] == 0).all()  # the minor scale, both sevenths
    assert weak[66] == 0 and strong[66] < 0  # the raised fourth of a secondary dominant: free
    assert strong[61] < weak[61] < 0  # a note outside: rarer, less so than in a key asked for
    assert weak[70] == weak[71] == 0 and strong[71] > 0  # no leading-note rule where no key was asked


def test_a_tune_keeps_to_its_register_softly_and_only_a_single_line() -> None:
    line = SimpleNamespace(pitches=[60, 62, 64, 65, 67, 65, 64, 62])  # its middle: 63.625
    batch = SimpleNamespace(request=SimpleNamespace(style="folk"), polyphonic=False)
    at = At(onset=8.0, in_chord=False, voice=0)
    bias = Register().bias(batch, line, at)  # type: ignore[arg-type]
    assert bias is not None and np.isfinite(bias).all()
    assert (bias[59:69] == 0).all()  # within 1.5 x 3.1 semitones of the middle: as the network has it
    assert bias[72] < 0 and bias[76] < bias[72] and bias[52] < 0  # further out: rarer, the more so the further
    assert Register().bias(batch, SimpleNamespace(pitches=[60, 62]), at) is None  # type: ignore[arg-type]
    voices = SimpleNamespace(request=SimpleNamespace(style="folk"), polyphonic=True)
    assert Register().bias(voices, line, at) is None  # type: ignore[arg-type]
    other = SimpleNamespace(request=SimpleNamespace(style="chorale"), polyphonic=False)
    assert Register().bias(other, line, at) is None  # type: ignore[arg-type]


def test_the_register_switch_lets_a_tune_wander(shipped: Generator) -> None:
    on: Pieces = []
    off: Pieces = []
    for seed in (12, 13):
        pair = _both(shipped, "register", GenerationRequest(style="folk", seconds=30, seed=seed, variations=4))
        on, off = on + pair[0], off + pair[1]

    def span(pieces: Pieces) -> float:
        return float(np.mean([np.ptp(p.notes.pitch) for p in pieces]))

    assert span(on) < span(off)


def test_in_minor_the_leading_note_is_likelier_in_the_bar_before_a_cadence() -> None:
    batch, line = _key_batch("minor")
    inside = KeyScale().bias(batch, line, At(onset=2.0, in_chord=False, voice=0))  # type: ignore[arg-type]
    before = KeyScale().bias(batch, line, At(onset=9.0, in_chord=False, voice=0))  # type: ignore[arg-type]
    assert inside is not None and before is not None
    assert inside[71] == inside[70] == 0  # both sevenths belong to the minor mode
    assert before[71] > 0 > before[70]  # in the bar before the cadence (arriving on beat 12), the raised one


def test_a_contrasting_section_is_held_in_its_related_key() -> None:
    plan = plan_form("ABA", phrase_bars=4, total_bars=120, bar_beats=4.0)
    batch = SimpleNamespace(request=SimpleNamespace(key="C"), plan=plan, chords=None)
    middle = next(p for p in plan.phrases if p.key)
    bias = KeyScale().bias(batch, SimpleNamespace(mode="major"),  # type: ignore[arg-type]
                           At(onset=middle.start + 1, in_chord=False, voice=0))
    assert bias is not None and bias[66] == 0 and bias[65] < 0  # G major: F sharp, not F


def test_the_range_switch_lets_notes_outside_the_range_through(shipped: Generator) -> None:
    request = GenerationRequest(style="chorale", seconds=20, seed=5, pitch_low=55, pitch_high=70)
    on, off = _both(shipped, "range", request)
    assert all(55 <= p <= 70 for piece in on for p in piece.notes.pitch)
    assert any(not 55 <= p <= 70 for piece in off for p in piece.notes.pitch)


def _phrase_notes(piece: GeneratedPiece, index: int, length: float) -> list[tuple[float, int]]:
    """(beats into the phrase, pitch) of the notes in the first `length` beats of phrase `index`."""
    assert piece.plan is not None
    phrase = piece.plan.phrases[index]
    beats = (piece.notes.start - piece.plan_start) * piece.notes.tempo_bpm / 60.0
    inside = (beats >= phrase.start - 1e-6) & (beats < phrase.start + length - 1e-6)
    return [(round(float(b - phrase.start), 4), int(p)) for b, p in zip(beats[inside], piece.notes.pitch[inside])]


def test_the_repeats_switch_writes_a_repeated_phrase_anew(shipped: Generator) -> None:
    request = GenerationRequest(style="fiddle", seconds=24, seed=6, form="AABB", tempo_bpm=120)
    on, off = _both(shipped, "repeats", request)
    assert on[0].plan is not None and on[0].plan.phrases[1].copy_of == 0
    length = on[0].plan.phrases[1].copy_until
    assert _phrase_notes(on[0], 1, length) == _phrase_notes(on[0], 0, length)
    assert _phrase_notes(off[0], 1, length) != _phrase_notes(off[0], 0, length)


def _bars_without_a_downbeat(piece: GeneratedPiece) -> int:
    assert piece.plan is not None
    beats = (piece.notes.start - piece.plan_start) * piece.notes.tempo_bpm / 60.0
    bar = piece.plan.bar_beats
    starts = {int(round(b / bar)) for b in beats if abs(b / bar - round(b / bar)) < 1e-6}
    return sum(1 for k in range(piece.plan.bars) if k not in starts)


def test_the_metre_switch_lets_an_onset_skip_a_downbeat(shipped: Generator) -> None:
    request = GenerationRequest(style="folk", seconds=30, seed=7, variations=4, timing_temperature=1.5)
    on, off = _both(shipped, "metre", request)
    assert sum(_bars_without_a_downbeat(p) for p in on) == 0
    assert sum(_bars_without_a_downbeat(p) for p in off) > 0


def test_the_cadence_switch_leaves_the_ending_to_the_network(shipped: Generator) -> None:
    on: Pieces = []
    off: Pieces = []
    for seed in (8, 12):  # the network alone closes on G in 5 of these 8 pieces
        request = GenerationRequest(style="chorale", seconds=16, seed=seed, key="G", variations=4, ending="perfect")
        pair = _both(shipped, "cadence", request)
        on, off = on + pair[0], off + pair[1]

    def final_bass(piece: GeneratedPiece) -> int:
        last = piece.notes.start >= piece.notes.start.max() - 1e-6
        return int(piece.notes.pitch[last].min()) % 12

    assert all(final_bass(p) == 7 for p in on)  # G in the bass
    assert any(final_bass(p) != 7 for p in off)


def test_a_close_on_the_tonic_is_approached_otherwise_than_from_the_dominant(shipped: Generator) -> None:
    on: Pieces = []
    off: Pieces = []
    for seed in (4, 6):
        request = GenerationRequest(style="fiddle", seconds=16, seed=seed, key="G", variations=4, ending="tonic")
        pair = _both(shipped, "cadence", request)
        on, off = on + pair[0], off + pair[1]

    def last_two(piece: GeneratedPiece) -> tuple[int, int]:
        order = np.argsort(piece.notes.start, kind="stable")
        return int(piece.notes.pitch[order[-2]]) % 12, int(piece.notes.pitch[order[-1]]) % 12

    assert all(last_two(p)[1] == 7 for p in on) and not all(last_two(p)[1] == 7 for p in off)  # G
    # The note before it is no tone of the dominant (D, F sharp, A): it is approached otherwise.
    assert all(last_two(p)[0] not in (2, 6, 9) for p in on) and any(last_two(p)[0] in (2, 6, 9) for p in off)


def _final_and_before(piece: GeneratedPiece) -> tuple[int, int]:
    """Pitch classes of the lowest note sounding at the last onset and at the onset before it."""
    seq = piece.notes
    start, end = np.round(seq.start, 4), np.round(seq.start + seq.duration, 4)
    bass = [int(seq.pitch[(start <= at) & (end > at)].min()) % 12 for at in np.unique(start)[-2:]]
    return bass[-1], bass[0]


def test_the_ending_control_writes_the_close_asked_for(shipped: Generator) -> None:
    def closes(ending: str, style: str = "chorale") -> list[tuple[int, int]]:
        request = GenerationRequest(style=style, seconds=16, seed=21, key="G", variations=4, ending=ending)
        return [_final_and_before(p) for p in shipped.generate(request)]

    assert all(close == (7, 2) for close in closes("perfect"))  # D, then G in the bass
    assert all(final == 7 and before != 2 for final, before in closes("tonic"))  # G, not after D
    assert any(final != 7 for final, _ in closes("open"))  # the network's own: not always on G
    assert all(close == (7, 2) for close in closes("perfect", "renaissance"))
    with pytest.raises(ValueError, match="ending"):
        GenerationRequest(style="chorale", ending="deceptive")


def test_by_default_a_piece_closes_as_often_each_way_as_the_style_s_pieces_in_its_mode() -> None:
    generator = Generator(PRETRAINED)
    generator._info()
    closes = generator._extra.setdefault("stats", {}).setdefault("chorale", {})
    closes["closes"] = {"major": {"perfect": 3, "tonic": 1, "open": 0}, "minor": {"perfect": 0, "tonic": 0, "open": 5}}
    drawn = [generator._style_close("chorale", "major", np.random.default_rng(seed)) for seed in range(400)]
    assert set(drawn) == {"perfect", "tonic"} and 0.68 <= drawn.count("perfect") / 400 <= 0.82
    minor = {generator._style_close("chorale", mode, np.random.default_rng(1)) for mode in ("minor", "dorian")}
    assert minor == {"open"}
    rng, same = np.random.default_rng(7), np.random.default_rng(7)
    generator._style_close("chorale", "major", rng)
    assert rng.random() == same.random()  # the draw leaves the piece's other draws as they were
    closes["closes"] = {}
    assert generator._style_close("chorale", "major", rng) is None  # no counts: the style's rule


@pytest.mark.parametrize("style", ["renaissance", "string-quartet"])
def test_in_voices_the_dominant_before_the_final_tonic_sounds_its_leading_note(shipped: Generator, style: str) -> None:
    # D minor: the leading note is C sharp. Renaissance pieces are in 4/2 (beats of half notes).
    request = GenerationRequest(style=style, seconds=16, seed=5, key="D", mode="minor", variations=4,
                                ending="perfect")
    on, off = _both(shipped, "cadence", request)

    def leading_note_before_the_end(piece: GeneratedPiece) -> bool:
        assert piece.plan is not None
        spb = 60.0 / piece.notes.tempo_bpm
        final = piece.plan_start + piece.plan.phrases[-1].cadence_at * spb
        numerator, denominator = piece.notes.time_signature
        window = min(numerator * 4.0 / denominator, 2 * 4.0 / denominator) * spb  # its last two beats
        start, end = piece.notes.start, piece.notes.start + piece.notes.duration
        sounding = (start < final - 1e-6) & (end > final - window + 1e-6)
        return bool(np.any(piece.notes.pitch[sounding] % 12 == 1))

    assert all(leading_note_before_the_end(p) for p in on)
    if style == "renaissance":  # the quartets' network writes it on its own at this seed; Palestrina's does not
        assert not all(leading_note_before_the_end(p) for p in off)


def test_a_chorale_in_three_four_closes_a_phrase_every_four_bars_on_the_downbeat(shipped: Generator) -> None:
    three = shipped.plan(GenerationRequest(style="chorale", seconds=60, time_signature=(3, 4), seed=1))
    four = shipped.plan(GenerationRequest(style="chorale", seconds=60, time_signature=(4, 4), seed=1))
    assert {p.end - p.start for p in three.phrases} == {12.0}  # not two bars, one of them held
    assert all(p.cadence_at == p.end - 3.0 for p in three.phrases)  # the last bar's downbeat
    assert {p.end - p.start for p in four.phrases} == {8.0}
    assert all(p.cadence_at == p.end - 2.0 for p in four.phrases[:-1])  # beat 3, as Bach's fermatas
    # A piece written to that plan keeps it.
    piece = shipped.generate(GenerationRequest(style="chorale", seconds=20, time_signature=(3, 4), seed=3))[0]
    assert piece.plan is not None and {p.end - p.start for p in piece.plan.phrases} == {12.0}


def test_the_voice_switch_lets_chorale_voices_leave_their_ranges(shipped: Generator) -> None:
    request = GenerationRequest(style="chorale", seconds=20, seed=9, variations=2)
    on, off = _both(shipped, "voice", request)

    def bass_out_of_range(piece: GeneratedPiece) -> int:
        seq = piece.notes
        end = seq.start + seq.duration
        lowest = [int(seq.pitch[(seq.start <= s + 1e-6) & (end > s + 1e-6)].min()) for s in np.unique(seq.start)]
        return sum(1 for p in lowest if not 40 <= p <= 62)  # the bass sings E2 to D4

    assert sum(bass_out_of_range(p) for p in on) == 0
    assert digest(on) != digest(off)


def test_the_loop_switch_changes_what_is_written(shipped: Generator) -> None:
    _both(shipped, "loop", GenerationRequest(style="string-quartet", seconds=30, seed=10, variations=4,
                                             temperature=0.3))


def test_a_chord_completed_in_parallel_octaves_is_refused_and_a_contrary_one_kept() -> None:
    before = [48, 55, 64, 72]  # C3 G3 E4 C5
    # Bass and soprano both rise a tone into an octave: D3 ... D5 moves in parallel octaves.
    allowed = completes_without_parallels(before, [50, 59, 65], np.array([74, 71]))
    assert not allowed[74] and allowed[71]
    # A voice that stays put makes no parallels with anything.
    assert completes_without_parallels(before, [48, 55, 64], np.array([72]))[72]


def test_a_voice_under_a_melody_moves_in_no_parallels_with_the_voice_of_its_rank_before() -> None:
    before = [48, 55, 64, 72]  # C3 G3 E4 C5
    # The melody rises to D5: a bass rising to D3 would move in octaves with it, one falling to B2 not.
    bass = by_rank_without_parallels(before, [], 74)
    assert not bass[50] and bass[47]
    # Over a bass risen to D3 the tenor (from G3) may not rise to A3 (fifths), and may fall to F3.
    tenor = by_rank_without_parallels(before, [50], 74)
    assert not tenor[57] and tenor[53]
    # A voice is its rank: a tenor leaping to A4 moves from G3 (a twelfth over the bass, as before),
    # although the nearest pitch before it was the soprano's C5.
    assert not tenor[69] and no_parallels(before, [50])[69]


def test_a_minor_key_asked_for_closes_with_its_leading_note_and_any_key_draws_its_close(shipped: Generator) -> None:
    minor = GenerationRequest(style="fiddle", seconds=12, seed=3, key="D", mode="minor", variations=4)
    for piece in shipped.generate(minor):
        order = np.argsort(piece.notes.start, kind="stable")
        assert int(piece.notes.pitch[order[-1]]) % 12 == 2  # D
        assert int(piece.notes.pitch[order[-2]]) % 12 in (4, 9, 1)  # after E, A or C sharp: a tone of V
    rng = np.random.default_rng(3)
    line = shipped._line(GenerationRequest(style="fiddle", seconds=12, seed=3), rng, shipped.config,
                         shipped.plan(GenerationRequest(style="fiddle", seconds=12, seed=3)))
    assert line.close in ("perfect", "tonic", "open")


def test_bars_written_again_at_the_end_keep_the_close_the_piece_had(shipped: Generator) -> None:
    from ml.data.notes import close_kind
    from ml.generation.infill import Passage

    request = GenerationRequest(style="fiddle", seconds=16, seed=4, key="G", ending="tonic", variations=4)
    for piece in shipped.generate(request):
        assert piece.plan is not None and close_kind(piece.notes, 7) == "tonic"
        passage = Passage(notes=piece.notes, plan=piece.plan, plan_start=piece.plan_start, key=piece.key,
                          first_bar=piece.plan.bars - 1, last_bar=piece.plan.bars)
        again = shipped.regenerate(passage, GenerationRequest(style="fiddle", seconds=16, seed=9, variations=2))
        assert close_kind(again.notes, 7) == "tonic"  # on G, not from a tone of D major
