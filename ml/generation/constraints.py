"""The rules the sampler obeys beside the network, each a small object with a name and a switch.

A constraint may do three things, each a method the sampler calls in one place:

- `mask(line)`: the pitches a line may ever use (computed once per line: key, range);
- `pitches(batch, line, at, allowed)`: narrow the pitches allowed for the next note;
- `limit_onset(batch, line, onset)`: pull a proposed new onset earlier (never later).

Some also act when the sampler reaches a boundary of the plan (`Repeats` copies a phrase,
`Cadence` moves the note before the final tonic). The sampler applies every constraint that is
switched on; `Generator(off=...)` switches them off by name, so that the evaluation can measure
what the network does alone. A constraint is written from its musical rule; no constraint imports
a measure of the evaluation, so that a measure can disagree with what the rule meant to enforce.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ml.data.notes import major_or_minor, scale_pitch_classes
from ml.generation import voices
from ml.generation.chords import ChordSpan, span_at
from ml.generation.figuration import passing_notes

if TYPE_CHECKING:
    from ml.generation.piece import GeneratedPiece
    from ml.generation.sampler import Batch, Line

PITCH_CLASS = np.arange(128) % 12

# Chorale voices from the bass up (MIDI pitches): the ranges harmony books give the four singers,
# bass E2-D4, tenor C3-G4, alto G3-D5, soprano C4-A5 (Bach's own parts leave them in one chord in
# twenty-five, mostly a tenor or alto a step higher). The voice rule holds the chorales to them.
VOICE_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "chorale": voices.VOICE_RANGES["chorale"],
}
# A line loops when one pitch sounds more than 5 times running, or a figure of 2 pitches comes 4
# times running, or one of 3 or 4 pitches 3 times: longer than a trill, a drone or a sequence
# keeps one figure in the music the styles are drawn from.
SAME_PITCH_RUN = 6
FIGURE_RUNS = {2: 4, 3: 3, 4: 3}
LOOP_SPAN = max(SAME_PITCH_RUN, *(length * runs for length, runs in FIGURE_RUNS.items()))
# How much rarer a note outside the key's scale is made: its logit is lowered by this much
# (about 7 times rarer than the network has it).
CHROMATIC = -2.0
# With "Any key", the key drawn for the piece pulls more weakly: a note outside its scale has its
# logit lowered by this much (about twice as rare), the raised fourth not at all. The network's own
# chromatic colour stays (in the chorales the raised fourth of a secondary dominant is as common as in
# Bach), while its drift away from the key is held back; -2 here took the raised fourth and the
# quartets' chromatic notes away (model card, Tried).
DRAWN_KEY = -0.7
# In the minor mode, how much likelier the raised seventh is made in the bar before a cadence.
LEADING_NOTE = 3.0
# A chord is made whole within this many notes at one onset (the sampler stops a chord at six).
MOST_CHORD_NOTES = 5


@dataclass(frozen=True)
class At:
    """Where the next note goes: its onset (beats from the plan's start), and its place in the chord."""

    onset: float
    in_chord: bool  # joins the notes already at this onset (they are written from the bass up)
    voice: int  # notes already at this onset: 0 for a new onset's first note (the bass)


class Constraint:
    """A rule with a name (its switch, and its name in reports). Subclasses override what they use."""

    name: ClassVar[str] = ""
    describes: ClassVar[str] = ""

    def mask(self, batch: Batch, line: Line) -> np.ndarray | None:
        """Key-relative pitches this line may ever use, or None for no limit."""
        return None

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """`allowed`, narrowed for the next note."""
        return allowed

    def essential(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """What still holds when the rules together leave no pitch (the sampler then keeps the key,
        the range and this): nothing, for a rule that may give way."""
        return allowed

    def limit_onset(self, batch: Batch, line: Line, onset: float) -> float:
        """A proposed new onset, moved earlier where the rule needs a note sooner."""
        return onset

    def longest(self, batch: Batch, line: Line, onset: float, pitch: int) -> float:
        """The longest a note of `pitch` starting at `onset` may last, in beats."""
        return math.inf

    def forced(self, batch: Batch, line: Line) -> tuple[float, int, float, float] | None:
        """A note this rule writes now (onset, key-relative pitch, duration, velocity 0..1), or None."""
        return None

    def steps(self, batch: Batch, line: Line, mask: np.ndarray) -> np.ndarray:
        """The step classes (0: another note at this onset) the next note may take."""
        return mask

    def bias(self, batch: Batch, line: Line, at: At) -> np.ndarray | None:
        """Logits to add to the network's for the next note's pitch (a preference, not a rule), or None."""
        return None

    def step_bias(self, batch: Batch, line: Line) -> np.ndarray | None:
        """Logits to add to the network's for the step to the line's next note, or None."""
        return None

    def duration_bias(self, batch: Batch, line: Line, onset: float) -> np.ndarray | None:
        """Logits to add to the network's for the length of a note starting at `onset`, or None."""
        return None


class KeyScale(Constraint):
    """The key, held by making notes outside its scale rarer rather than impossible.

    Each note outside the scale of the key (of its section's key, where a long piece moves to a
    related key for a while) has its logit lowered by CHROMATIC, so that what the network writes
    as a leading note, a secondary dominant or a chromatic passing note can still come, as it does
    in the music it learnt from, while a key the network wanders from is pulled back. A requested
    chord's tones are in the scale in its bar. In the minor mode the sixth and seventh may be
    raised (melodic and harmonic minor), and in the bar before a cadence the seventh is raised
    (the leading note): the lowered seventh is made rarer there, and the raised one likelier.
    A key nobody asked for (the style's drawn key, or the one a primer, chords or a melody suggest) pulls
    more weakly (DRAWN_KEY), leaves the raised fourth free and has no leading-note rule.
    """

    name = "key"
    describes = ("notes outside the key's scale are made rarer (not forbidden; less so in a key nobody asked for); "
                 "in minor, the leading note at cadences")

    def bias(self, batch: Batch, line: Line, at: At) -> np.ndarray | None:
        drawn = batch.request.key == "any"
        phrase = batch.plan.phrases[batch.plan.phrase_at(at.onset)]
        # Away from home: the dominant of a major key, the relative major of a minor one.
        mode = line.mode if phrase.key == 0 else "major"
        scale = {(phrase.key + pc) % 12 for pc in scale_pitch_classes(0, mode)}
        if drawn:
            scale.add((phrase.key + 6) % 12)
        if batch.chords is not None:
            scale |= batch.chords.tones_at(line, at.onset)
        bias = np.where(np.isin(PITCH_CLASS, list(scale)), 0.0, DRAWN_KEY if drawn else CHROMATIC)
        cadence = batch.plan.next_cadence(at.onset)
        if (not drawn and mode in ("minor", "dorian") and cadence is not None
                and cadence - batch.plan.bar_beats <= at.onset < cadence):
            bias[PITCH_CLASS == (phrase.key + 10) % 12] += CHROMATIC
            bias[PITCH_CLASS == (phrase.key + 11) % 12] += LEADING_NOTE
        return bias


class PitchRange(Constraint):
    name = "range"
    describes = "every note lies between the lowest and the highest note asked for"

    def mask(self, batch: Batch, line: Line) -> np.ndarray | None:
        allowed = np.zeros(128, dtype=bool)
        low, high = batch.request.pitch_low - line.shift, batch.request.pitch_high - line.shift
        allowed[max(0, low):max(0, min(127, high) + 1)] = True
        return allowed


# How far a single line's notes spread around their own middle within a piece: the standard
# deviation of the pitches of the first 30 s of each training piece, median per style (folk 3.1,
# fiddle 4.2 semitones). A tune lives in a register a voice or a fiddle's strings keep it in.
STYLE_TESSITURA = {"folk": 3.1, "fiddle": 4.2}
# The register is felt once the tune has this many notes.
REGISTER_AFTER = 8


class Register(Constraint):
    """A single line stays in its register: a note further than 1.5 standard deviations of the
    style's tessitura from the middle of the line so far is made rarer, more so the further it is
    (a soft wall: the network's own leaps within the register are untouched)."""

    name = "register"
    describes = "a single line keeps to its register: notes far from the middle of the tune so far are made rarer"

    def bias(self, batch: Batch, line: Line, at: At) -> np.ndarray | None:
        spread = STYLE_TESSITURA.get(batch.request.style)
        if spread is None or batch.polyphonic or len(line.pitches) < REGISTER_AFTER:
            return None
        middle = float(np.mean(line.pitches))
        beyond = np.clip(np.abs(np.arange(128) - middle) - 1.5 * spread, 0.0, None)
        return -0.5 * (beyond / spread) ** 2


class Repeats(Constraint):
    """A phrase the plan repeats is the notes of its model again (up to its changed ending)."""

    name = "repeats"
    describes = "a phrase the form repeats is copied from its first statement"

    def boundaries(self, batch: Batch) -> list[tuple[float, str, int]]:
        """Where each copied phrase starts; a phrase under other requested chords than its model's is
        written anew instead (the same tune over other chords would contradict them)."""
        return [(p.start, "copy", i) for i, p in enumerate(batch.plan.phrases)
                if p.copy_of is not None and (batch.chords is None or batch.chords.same_chords(
                    batch.plan.phrases[p.copy_of].start, p.start, p.copy_until))]

    def copied_notes(self, batch: Batch, line: Line, index: int) -> list[tuple[float, int, float, float]]:
        """(onset, pitch, duration, velocity) of the written notes that phrase `index` repeats."""
        phrase = batch.plan.phrases[index]
        source = batch.plan.phrases[phrase.copy_of] if phrase.copy_of is not None else phrase
        return [note for note in zip(line.onsets, line.pitches, line.durations, line.velocities)
                if source.start - 1e-9 <= note[0] < source.start + phrase.copy_until - 1e-9]

    def queue(self, batch: Batch, line: Line, index: int) -> None:
        """Queue the notes of phrase `index`, moved to where it starts (an ornamented return's: those
        on its strong beats, between which the sampler lets the network write)."""
        phrase = batch.plan.phrases[index]
        offset = phrase.start - (phrase.start if phrase.copy_of is None else batch.plan.phrases[phrase.copy_of].start)
        line.queue = [(onset + offset, pitch, min(duration, phrase.start + phrase.copy_until - onset - offset)
                       if phrase.final else duration, velocity)
                      for onset, pitch, duration, velocity in self.copied_notes(batch, line, index)]
        line.ornament = phrase.ornamented
        line.between = []
        if line.ornament:
            strong = strong_beats(batch.plan.bar_beats, batch.beat)
            kept = [abs((note[0] - phrase.start + 1e-9) % strong) < 1e-6 for note in line.queue]
            # Between two kept notes the network writes at most one note more than the model had
            # there: an ornament, not a denser texture (a 600-s quartet would outrun its notes).
            dropped = 0
            for keep in kept:
                if keep:
                    line.between.append(dropped + 1)
                    dropped = 0
                else:
                    dropped += 1
            line.queue = [note for note, keep in zip(line.queue, kept) if keep]
        line.not_before = phrase.start + phrase.copy_until
        line.vary = None
        if phrase.copy_of is not None and phrase.copy_until < phrase.end - phrase.start - 1e-9:
            source = batch.plan.phrases[phrase.copy_of]
            at = source.start + phrase.copy_until
            there = frozenset(p for o, p in zip(line.onsets, line.pitches) if abs(o - at) < 1e-9)
            line.vary = (phrase.start + phrase.copy_until, there) if there else None

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """The first note of a repeat's new ending is not the note its model had there."""
        if line.vary is None or at.voice != 0 or abs(at.onset - line.vary[0]) > 1e-9:
            return allowed
        other = allowed.copy()
        other[list(line.vary[1])] = False
        return other if other.any() else allowed


def strong_beats(bar_beats: float, beat: float) -> float:
    """Beats between the strong beats of a bar: two beats in a bar of four (4/4's beats 1 and 3,
    12/8's first and third dotted quarters), else the bar (3/4, 2/4 and 6/8 have one strong beat)."""
    pulses = int(round(bar_beats / beat)) if beat > 0 else 1
    return 2 * beat if pulses >= 4 and pulses % 2 == 0 else bar_beats


class Metre(Constraint):
    name = "metre"
    describes = "no onset skips a downbeat: every bar starts with a note"

    def limit_onset(self, batch: Batch, line: Line, onset: float) -> float:
        bar = batch.plan.bar_beats
        return min(onset, (math.floor(line.position / bar + 1e-9) + 1) * bar)


# Styles whose pieces close with a perfect cadence as a rule: the dominant chord with its leading
# note, then the tonic in the bass (Bach's chorales, at nearly every final fermata); so does every
# piece in the minor mode, whose leading note is raised at the close. Elsewhere (the major mode of
# the other styles) the network approaches the close as its training pieces do (a fiddle tune ends
# 3-2-1 as often as 5-1), and the first and last notes are drawn to the tonic triad, the bass to the
# tonic, by these logits rather than made so. A single line's last note is pulled harder: at +2 fiddle
# tunes closed on the tonic in 59-67% of pieces against 79% of real tunes (at +4, 73%; folk 77 / 80%
# against 73%), while voices at +2 close about as often as real pieces do (quartets 60-67% against
# 62%; `make evaluate`, "tonic ending").
PERFECT_CADENCE_STYLES = frozenset({"chorale"})
CLOSING_TONIC = 2.0
LINE_CLOSING_TONIC = 4.0


class Cadence(Constraint):
    """A piece opens on its tonic triad and closes as drawn for it (`Line.close`, from the closes of the
    style's training pieces in its mode): a perfect cadence, V-I with the leading note, written; the
    tonic chord written, approached otherwise than from V (no V in the bass just before it; a single
    line's note before it no tone of V); or an open close, all the network's. A line with
    no drawn close (a model without those counts) closes as its style's rule says: chorales and the
    minor mode V-I, written; elsewhere a pull to the tonic. The opening follows that rule too."""

    name = "cadence"
    describes = "the piece opens on the tonic triad and closes as the style's pieces in its mode close, drawn " \
                "piece by piece: V-I with the leading note (in a single line the last note before the tonic a " \
                "tone of V), on the tonic chord approached otherwise (IV-I, 3-1), or as the network ends it"

    @staticmethod
    def _rule(batch: Batch, line: Line) -> bool:
        """Whether the style's rule writes the edges (else it pulls them to the tonic)."""
        return batch.request.style in PERFECT_CADENCE_STYLES or line.mode in ("minor", "dorian")

    def _close(self, batch: Batch, line: Line) -> str:
        """"perfect", "tonic" or "open" (drawn for the line), or "pull" (the rule, where none was drawn)."""
        if line.close is not None:
            return line.close
        return "perfect" if self._rule(batch, line) else "pull"

    @staticmethod
    def _edge(line: Line, at: At) -> bool:
        """Whether the next note belongs to the piece's first chord or its final one."""
        opening = line.primer is None and (not line.onsets or (at.in_chord and line.onsets[0] == at.onset))
        return line.arrived or opening

    def _writes_edge(self, batch: Batch, line: Line) -> bool:
        """Whether the edge the line is at (its final chord once arrived, else its first) is written."""
        if line.arrived:
            return self._close(batch, line) in ("perfect", "tonic")
        return self._rule(batch, line)

    def bias(self, batch: Batch, line: Line, at: At) -> np.ndarray | None:
        if batch.chords is not None or not self._edge(line, at) or self._writes_edge(batch, line):
            return None
        if line.arrived and self._close(batch, line) == "open":
            return None
        third = 3 if line.mode in ("minor", "dorian") else 4
        bass = at.voice == 0 and (batch.polyphonic or line.arrived)
        pull = LINE_CLOSING_TONIC if line.arrived and not batch.polyphonic else CLOSING_TONIC
        return np.where(np.isin(PITCH_CLASS, [0] if bass else [0, third, 7]), pull, 0.0)

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        if batch.chords is not None:
            return allowed  # the requested chords decide the opening and the close
        third = 3 if line.mode in ("minor", "dorian") else 4
        if self._edge(line, at):
            if not self._writes_edge(batch, line):
                return allowed  # `bias` draws it, or the network writes it
            # The final chord, and the first: the tonic in the bass, then the tonic triad (a piece
            # opens in its key, as it closes; a continuation's opening is its primer's).
            bass_only = at.voice == 0 and (batch.polyphonic or line.arrived)
            return allowed & np.isin(PITCH_CLASS, [0] if bass_only else [0, third, 7])
        close = self._close(batch, line)
        if close == "tonic" and batch.polyphonic and at.voice == 0 and self._dominant(batch, at.onset):
            # A close on the tonic approached otherwise: no V in the bass just before it (IV-I, I6-I).
            held = batch.sounding(line, at.onset)
            under = np.arange(128) < (min(held) if held else 128)
            kept = allowed & ~(under & (PITCH_CLASS == 7))
            return kept if kept.any() else allowed
        if close == "perfect" and self._dominant(batch, at.onset):
            # Just before it, the dominant: V in the bass (in a single line, a tone of V), the
            # dominant seventh chord above it. A line's last note before that is set by `arrive`.
            held = batch.sounding(line, at.onset)
            lowest = np.arange(128) < (min(held) if held else 128)
            if at.voice > 0:
                lowest[:] = False
            bass = [7] if batch.polyphonic else [2, 7, 11]
            upper = [2, 5, 7, 11]
            if batch.polyphonic and at.voice > 0 and not self._has_leading_note(batch, line, at.onset):
                # The dominant chord's third is the leading note (raised in minor): it sounds.
                above = np.arange(128) > max(line.chord) if line.chord else np.ones(128, dtype=bool)
                if (allowed & above & (PITCH_CLASS == 11)).any():
                    upper = [11]
            return allowed & np.where(lowest, np.isin(PITCH_CLASS, bass), np.isin(PITCH_CLASS, upper))
        return allowed

    def steps(self, batch: Batch, line: Line, mask: np.ndarray) -> np.ndarray:
        """In voices, the dominant chord before the final tonic takes notes at its onset until its
        leading note sounds (a V without its third does not lead home)."""
        if not batch.polyphonic or batch.chords is not None or line.arrived or not mask[0] or not line.chord:
            return mask
        if self._close(batch, line) != "perfect":
            return mask
        if not self._dominant(batch, line.position) or len(line.chord) >= MOST_CHORD_NOTES:
            return mask
        if self._has_leading_note(batch, line, line.position):
            return mask
        stay = np.zeros_like(mask)
        stay[0] = True
        return stay

    @staticmethod
    def _dominant(batch: Batch, onset: float) -> bool:
        """Whether an onset falls where the final cadence's dominant stands: the last two beats
        before it (half notes in 4/2, dotted quarters in 6/8), in a single line the last beat."""
        final_at = batch.plan.phrases[-1].cadence_at
        span = min(batch.plan.bar_beats, batch.beat * (2.0 if batch.polyphonic else 1.0))
        return final_at - span <= onset < final_at

    @staticmethod
    def _has_leading_note(batch: Batch, line: Line, onset: float) -> bool:
        """Whether the raised seventh sounds at an onset (held from before, or written there)."""
        here = line.chord if line.onsets and abs(line.position - onset) < 1e-9 else []
        return any(p % 12 == 11 for p in [*batch.sounding(line, onset), *here])

    def arrive(self, batch: Batch, line: Line) -> None:
        """At the final tonic: a single line's note before it becomes the nearest tone of V (in the
        minor and dorian modes the leading note, the raised seventh, within a third or else a fifth) in
        a perfect close; in a close on the tonic approached otherwise, a tone of V there becomes the
        nearest note that is none (the tonic repeated, the third, the fourth or the sixth); where the
        close is only drawn to the tonic, or open, the note before it stays the network's."""
        close = self._close(batch, line)
        if batch.polyphonic or not line.pitches or batch.chords is not None or close not in ("perfect", "tonic"):
            return
        last = line.pitches[-1]
        of_v = np.isin(PITCH_CLASS, [2, 7, 11])
        if close == "tonic":
            if of_v[last]:
                line.pitches[-1] = _nearest(batch.allowed[batch.lines.index(line)] & ~of_v, last)
            return
        allowed = batch.allowed[batch.lines.index(line)] & of_v
        if line.mode in ("minor", "dorian"):
            # The nearest leading note: within a third where there is one, else within a fifth (a
            # line that comes from the third of the key leaps down to it and rises to the tonic).
            distance = np.abs(np.arange(128) - last)
            for reach in (4, 7):
                leading = allowed & (PITCH_CLASS == 11) & (distance <= reach)
                if leading.any():
                    allowed = leading
                    break
        if not allowed[last]:
            line.pitches[-1] = _nearest(allowed, last)


def _nearest(allowed: np.ndarray, pitch: int) -> int:
    """The allowed pitch nearest to `pitch` (the lower of two as near); `pitch` itself where none is allowed."""
    options = np.flatnonzero(allowed)
    return int(options[np.abs(options - pitch).argmin()]) if len(options) else pitch


class VoiceLeading(Constraint):
    """Parts move without parallel perfect fifths or octaves, each voice in its range.

    A voice's range is that of its rank in the chord, counted from the bass (the notes held from
    before count: a note written under a held bass is not the bass). Under a given melody the
    texture is four voices by construction (three written under the tune), so a voice is its rank
    in parallels too: each moves from the note of the same rank in the chord before, the melody from
    its top note. In a texture the network chooses freely, a voice is taken to come from the
    nearest pitch that sounded before.
    """

    name = "voice"
    describes = "no parallel fifths or octaves between voices; chorale voices within their ranges"

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        if not batch.polyphonic:
            return allowed
        return allowed & self._voiced(batch, line, at)

    def essential(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """Under a given melody the parts still move without parallels and stay in their ranges
        when another rule gives way (the melody's own limit, nothing above it, is kept too)."""
        if not batch.polyphonic or batch.melody is None:
            return allowed
        kept = allowed & self._voiced(batch, line, at) & batch.melody.essential(batch, line, at, allowed)
        return kept if kept.any() else allowed

    def _voiced(self, batch: Batch, line: Line, at: At) -> np.ndarray:
        """The pitches the next note may take as a voice: no parallels with a voice below it (or with
        a given melody above it), and within the range of its rank."""
        allowed = np.ones(128, dtype=bool)
        before = chord_before(batch, line, at)
        top = batch.melody.sounding(line, at.onset) if batch.melody is not None else None
        held = sorted(p for p in batch.sounding(line, at.onset) if top is None or p < top)
        written = line.chord if at.in_chord else []
        ranges = VOICE_RANGES.get(batch.request.style, ())
        to_come = batch.melody.voices_to_come(batch, line, at) if batch.melody is not None else 0
        # The candidates between two held notes share a rank; one in unison with a held note is
        # counted above it (the voice that stays keeps its rank).
        edges = [0, *held, 128]
        for low, high in zip(edges, edges[1:]):
            if low >= high:
                continue
            under = sorted(written + [p for p in held if p <= low])
            part = allowed[low:high]  # a view: narrowing it narrows `allowed`
            if top is not None and len(before) == 4:
                part &= by_rank_without_parallels(before, under, top)[low:high]
            else:
                part &= no_parallels(before, under)[low:high]
                if top is not None and before:
                    part &= _no_parallels_below(before, top)[low:high]
            rank = len(under)
            if rank < len(ranges):
                pitch = np.arange(low, high)
                part &= (pitch >= ranges[rank][0] - line.shift) & (pitch <= ranges[rank][1] - line.shift)
                # Each voice still to come at this onset under a given melody fits above this
                # one, in its own range, below the melody.
                after = pitch
                for upper in ranges[rank + 1:rank + 1 + to_come]:
                    after = np.maximum(after + 1, upper[0] - line.shift)
                    part &= after <= min(upper[1] - line.shift, 127 if top is None else top - 1)
        present = held + written
        if top is None and at.in_chord and len(line.previous_sounding) == 4 and len(present) == 3:
            # This note completes a four-part chord: no two of its voices, counted from the bass,
            # may move in parallels from the last four-part chord.
            allowed &= completes_without_parallels(line.previous_sounding, present, np.flatnonzero(allowed))
        return allowed


class Loops(Constraint):
    """No note may complete a degenerate loop (see SAME_PITCH_RUN and FIGURE_RUNS)."""

    name = "loop"
    describes = "no pitch or short figure repeats on and on"

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        if line.arrived:
            return allowed
        allowed = allowed.copy()
        for p in loop_completions(line.history):
            allowed[p] = False
        upcoming = batch.copy_ahead(line, at.onset)
        if upcoming:  # the last bar before a repeat: no loop across into the copied notes
            allowed[loops_across(line.history, np.flatnonzero(allowed), upcoming)] = False
        return allowed

    def joins_a_loop(self, line: Line, upcoming: list[int]) -> bool:
        """Whether the notes before and `upcoming` (a copied phrase's) make a loop that neither makes alone."""
        before, after = line.history[-LOOP_SPAN:], upcoming[:LOOP_SPAN]
        return bool(before and after) and _loops(before + after) and not _loops(before) and not _loops(after)


def step_row(in_bar: float) -> int:
    """The row of a drift table a note's place in its bar falls in: 12 for a downbeat, else where in
    its quarter note it falls, in twelfths (0 on the beat, 6 half way)."""
    if in_bar < 1e-6:
        return DRIFT_DOWNBEAT
    return int(round((in_bar % 1.0) * 12)) % 12


# The rows of a drift table's steps: twelve places in the quarter note, and the downbeat.
DRIFT_DOWNBEAT = 12
DRIFT_ROWS = 13


class Drift(Constraint):
    """The network's drift from its style, writing alone, taken back (a preference, not a rule).

    Read note by note, the network gives each step and scale degree its share in the music it learnt
    from; writing from its own notes it drifts (exposure bias): its chorales lose their passing
    eighths and sixteenths, its folk songs run in eighths. `ml.generation.correction` writes pieces of
    each style and counts how often each step follows each place in the bar (twelve places in the
    quarter note, and the downbeat), how long a note starting there lasts and how often each scale
    degree sounds, against the style's training pieces, and stores the clipped log-ratios in the model
    file (`extra["correction"]`). This adds them to the network's logits: a value the network writes
    too often is made rarer by its ratio, one it loses likelier. Where there is no table (a model file
    without one, a section away from the home key), it adds nothing. The shipped file has none: the
    tables fitted for it brought the counts near the training pieces' and made the music easier to
    tell from real music (README, "Taking the drift back in the sampler").
    """

    name = "drift"
    describes = ("steps, note lengths and scale degrees kept as common as in the style's training pieces, "
                 "where the network writing alone drifts from them")

    def __init__(self, tables: dict[str, object]) -> None:
        steps, durations = tables.get("steps"), tables.get("durations")
        self.steps_table = np.asarray(steps, dtype=np.float64) if steps is not None else None
        self.durations_table = np.asarray(durations, dtype=np.float64) if durations is not None else None
        degrees = tables.get("degrees") or {}
        assert isinstance(degrees, dict)
        self.degrees = {mode: np.asarray(values, dtype=np.float64)[PITCH_CLASS] for mode, values in degrees.items()}

    def step_bias(self, batch: Batch, line: Line) -> np.ndarray | None:
        if self.steps_table is None or not line.onsets:
            return None
        row = self.steps_table[step_row(line.position % batch.plan.bar_beats)]
        return row if len(row) == len(batch.grid) else None

    def duration_bias(self, batch: Batch, line: Line, onset: float) -> np.ndarray | None:
        if self.durations_table is None:
            return None
        row = self.durations_table[step_row(onset % batch.plan.bar_beats)]
        return row if len(row) == len(batch.grid) else None

    def bias(self, batch: Batch, line: Line, at: At) -> np.ndarray | None:
        if batch.plan.phrases[batch.plan.phrase_at(at.onset)].key != 0:
            return None
        return self.degrees.get(major_or_minor(line.mode))


class ChordTargets(Constraint):
    """The sounding harmony of each bar (or half bar) is the requested chord.

    On the beats of the metre every note is a chord tone, and the bass at a chord's first onset is
    its root (or the bass the symbol names: C/E, V6); between beats a note outside the chord is a
    passing or neighbour note: a step (one or two semitones) from the note before it in its voice
    and a step from a chord tone it can resolve to. No onset skips a change of chord.
    """

    name = "chords"
    describes = "chord tones on the beats, the root (or the named bass) under each new chord, passing and " \
                "neighbour notes between"

    def __init__(self, spans: list[ChordSpan] | None = None) -> None:
        self.spans = spans or []

    def span(self, onset: float) -> ChordSpan | None:
        return span_at(self.spans, onset)

    def same_chords(self, first: float, second: float, length: float) -> bool:
        """Whether the chords of [first, first + length) are those of [second, second + length)."""
        def chords(start: float) -> list[tuple[float, frozenset[int], int]]:
            return [(round(s.start - start, 6), s.chord.tones, s.chord.bass) for s in self.spans
                    if start - 1e-9 <= s.start < start + length - 1e-9]

        return chords(first) == chords(second)

    def tones_at(self, line: Line, onset: float) -> frozenset[int]:
        """The key-relative pitch classes of the chord at `onset` (empty where no chord is asked)."""
        span = self.span(onset)
        return frozenset((pc - line.shift) % 12 for pc in span.chord.tones) if span is not None else frozenset()

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        span = self.span(at.onset)
        if span is None:
            return allowed
        tones = np.isin(PITCH_CLASS, [(pc - line.shift) % 12 for pc in span.chord.tones])
        first_of_chord = abs(at.onset - span.start) < 1e-6
        if at.voice == 0 and first_of_chord and (batch.polyphonic or not line.onsets):
            bass = {span.chord.bass} if span.chord.bass != span.chord.root else {span.chord.root}
            lowest = np.isin(PITCH_CLASS, [(pc - line.shift) % 12 for pc in bass])
            held = batch.sounding(line, at.onset)
            if held:  # a held note below would be the bass: a new bass note must go under it
                lowest &= np.arange(128) < min(held)
            return allowed & lowest
        if first_of_chord and not batch.polyphonic:
            # A single line names the chord where it changes: its root, third or seventh (a fifth
            # alone is heard as another chord's root as easily).
            fifth = (span.chord.root + 7) % 12
            named = [pc for pc in span.chord.tones if pc != fifth or len(span.chord.tones) < 3]
            return allowed & np.isin(PITCH_CLASS, [(pc - line.shift) % 12 for pc in named])
        if first_of_chord and at.in_chord and batch.polyphonic:
            missing = self.missing(batch, line, at.onset, span)
            if missing:  # the chord sounds whole where it changes: its root, third and fifth
                return allowed & np.isin(PITCH_CLASS, [(pc - line.shift) % 12 for pc in missing])
        if first_of_chord or batch.on_beat(at.onset):
            return allowed & tones
        before = chord_before(batch, line, at)
        previous = before if (batch.polyphonic and before) else line.pitches[-1:]
        if not previous:
            return allowed & tones
        candidates = np.arange(128)
        chord_pitches = np.flatnonzero(tones)
        from_previous = np.abs(candidates[:, None] - np.asarray(previous)[None, :]).min(axis=1)
        to_chord = np.abs(candidates[:, None] - chord_pitches[None, :]).min(axis=1)
        passing = (from_previous >= 1) & (from_previous <= 2) & (to_chord >= 1) & (to_chord <= 2)
        return allowed & (tones | passing)

    def essential(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """The chords were asked for: where the rules together leave no pitch, a voice may move in
        parallels, but the chord's tones still hold."""
        return self.pitches(batch, line, at, allowed)

    def missing(self, batch: Batch, line: Line, onset: float, span: ChordSpan) -> set[int]:
        """The tones of the chord's triad (pitch classes) that do not sound yet at `onset`, the
        chord's first: neither held from before nor written there so far."""
        at_onset = line.chord if line.onsets and abs(line.position - onset) < 1e-9 else []
        sounding = {(p + line.shift) % 12 for p in batch.sounding(line, onset) + at_onset}
        return set(span.chord.triad) - sounding

    def steps(self, batch: Batch, line: Line, mask: np.ndarray) -> np.ndarray:
        """In several voices, the first onset of a chord takes notes until its triad sounds whole
        (without it, a bar of a root and a fifth, or of a held note, reads as another chord)."""
        span = self.span(line.position)
        if not batch.polyphonic or span is None or abs(line.position - span.start) > 1e-6 or not mask[0]:
            return mask
        missing = self.missing(batch, line, line.position, span)
        if not missing or len(line.chord) >= MOST_CHORD_NOTES:
            return mask
        above = np.arange(128) > max(line.chord)
        reachable = batch.allowed[batch.lines.index(line)] & above & np.isin(
            PITCH_CLASS, [(pc - line.shift) % 12 for pc in missing])
        if not reachable.any():
            return mask
        stay = np.zeros_like(mask)
        stay[0] = True
        return stay

    def longest(self, batch: Batch, line: Line, onset: float, pitch: int) -> float:
        """A note may sound on into the next chord only as one of its tones (a common tone)."""
        pitch_class = (pitch + line.shift) % 12
        for span in self.spans:
            if span.start > onset + 1e-9 and pitch_class not in span.chord.tones:
                return span.start - onset
        return math.inf

    def limit_onset(self, batch: Batch, line: Line, onset: float) -> float:
        for span in self.spans:
            if span.start > line.position + 1e-9:
                return min(onset, span.start)
        return onset


class GivenMelody(Constraint):
    """A melody to harmonise is kept verbatim as the top voice; the network writes the voices below.

    At each melody onset the lower voices are written first (chord notes go from the bass up), then
    the melody note; between melody onsets the lower voices may move, always below the melody note
    that sounds, and no onset skips a melody onset.
    """

    name = "melody"
    describes = "the given melody is the top voice, note for note; the other voices stay below it"

    def __init__(self, notes: list[tuple[float, int, float, float]], voices: int = 4) -> None:
        self.notes = sorted(notes)  # (onset beats, absolute pitch, duration beats, velocity 0..1)
        self.voices = voices

    def _pending(self, line: Line) -> tuple[float, int, float, float] | None:
        """The melody note at the current onset that is not written yet."""
        if line.melody_next < len(self.notes):
            note = self.notes[line.melody_next]
            if line.onsets and abs(note[0] - line.position) < 1e-9:
                return note
        return None

    def sounding(self, line: Line, onset: float) -> int | None:
        """The key-relative pitch of the melody note sounding at `onset` (starting there included)."""
        for start, pitch, duration, _ in self.notes:
            if start - 1e-9 <= onset < start + duration - 1e-9:
                return pitch - line.shift
            if start > onset + 1e-9:
                break
        return None

    def forced(self, batch: Batch, line: Line) -> tuple[float, int, float, float] | None:
        note = self._pending(line)
        if note is None:
            return None
        top = note[1] - line.shift
        below = [p for p in batch.sounding(line, note[0]) if p < top]
        room = not line.chord or max(line.chord) < top - 1  # a pitch left between the chord and the melody
        if room and len(below) + len(line.chord) < self.voices - 1 and len(line.chord) < self.voices - 1:
            return None
        line.melody_next += 1
        return note[0], note[1] - line.shift, note[2], note[3]

    def steps(self, batch: Batch, line: Line, mask: np.ndarray) -> np.ndarray:
        if self._pending(line) is None:
            written = self.notes[line.melody_next - 1] if line.melody_next else None
            if written is not None and abs(written[0] - line.position) < 1e-9:
                mask = mask.copy()
                mask[0] = False  # the melody note closes its chord: nothing goes above it
            return mask
        stay = np.zeros_like(mask)
        stay[0] = True  # the lower voices of this chord, then its melody note
        return stay

    def essential(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        """Whatever else gives way, nothing goes above the melody."""
        top = self.sounding(line, at.onset)
        return allowed if top is None else allowed & (np.arange(128) < top)

    def pitches(self, batch: Batch, line: Line, at: At, allowed: np.ndarray) -> np.ndarray:
        top = self.sounding(line, at.onset)
        if top is None:
            return allowed
        allowed = self.essential(batch, line, at, allowed)
        if batch.on_beat(at.onset):
            # On a beat the melody is a chord tone: a third, fifth, sixth or octave above the bass,
            # and no second or seventh against the voices between.
            below = (top - np.arange(128)) % 12
            bass = at.voice == 0 and not [p for p in batch.sounding(line, at.onset) if p < top]
            allowed = allowed & (np.isin(below, (0, 3, 4, 7, 8, 9)) if bass else ~np.isin(below, (1, 2, 10, 11)))
        still = self.voices_to_come(batch, line, at)
        if still:
            # Leave room under the melody for the voices still to come at this onset: as many
            # pitches above this one as they need, each in the key and, on a beat, no second or
            # seventh against the melody.
            room = batch.allowed[batch.lines.index(line)] & (np.arange(128) < top)
            if batch.request.key != "any":
                room &= np.isin(PITCH_CLASS, list(scale_pitch_classes(0, line.mode)))
            if batch.on_beat(at.onset):
                room &= ~np.isin((top - np.arange(128)) % 12, (1, 2, 10, 11))
            above = np.append(np.cumsum(room[::-1])[::-1], 0)[1:]  # room strictly above each pitch
            allowed = allowed & (above >= still)
        return allowed

    def voices_to_come(self, batch: Batch, line: Line, at: At) -> int:
        """How many voices are still to be written under the melody at this onset after this note:
        at a melody onset, the lower voices are written first, up to `voices` in all."""
        if line.melody_next >= len(self.notes) or abs(self.notes[line.melody_next][0] - at.onset) > 1e-9:
            return 0
        top = self.notes[line.melody_next][1] - line.shift
        held = [p for p in batch.sounding(line, at.onset) if p < top]
        return max(0, self.voices - 2 - len(held) - (len(line.chord) if at.in_chord else 0))

    def longest(self, batch: Batch, line: Line, onset: float, pitch: int) -> float:
        """A lower voice's note ends before the melody comes down to it (no crossing)."""
        for start, top, _, _ in self.notes:
            if start > onset + 1e-9 and top - line.shift <= pitch:
                return start - onset
        return math.inf

    def limit_onset(self, batch: Batch, line: Line, onset: float) -> float:
        if line.melody_next < len(self.notes):
            return min(onset, self.notes[line.melody_next][0])
        return onset


def _no_parallels_below(before: list[int], upper: int) -> np.ndarray:
    """Pitches under `upper` (a voice already decided, above) that make no parallel fifth or octave
    with it: each voice taken to come from the nearest pitch that sounded before."""
    allowed = np.ones(128, dtype=bool)
    previous = np.asarray(before)
    candidates = np.arange(128)
    came_from = previous[np.abs(previous[None, :] - candidates[:, None]).argmin(axis=1)]
    upper_from = int(previous[np.abs(previous - upper).argmin()])
    was = upper_from - came_from
    now = upper - candidates
    similar = (candidates - came_from) * (upper - upper_from) > 0
    allowed[(was > 0) & np.isin(was % 12, (0, 7)) & (now % 12 == was % 12) & similar] = False
    return allowed


def chord_before(batch: Batch, line: Line, at: At) -> list[int]:
    """The pitches that sounded at the onset before this note's (a new onset's first note comes
    after the whole chord of the last one; a chord's later notes after the chord before it)."""
    if at.in_chord:
        return list(line.previous_sounding)
    return sorted(batch.sounding(line, line.position, at_or_before=True)) if line.onsets else []


def by_rank_without_parallels(before: list[int], under: list[int], top: int | None) -> np.ndarray:
    """Pitches for the voice of rank len(under) from the bass (above the notes `under`, below the
    melody `top`) that move in no parallel perfect fifth or octave with a voice under it or with the
    melody, each voice paired with the note of its rank in the four-note chord `before` (the
    melody with its top note)."""
    allowed = np.ones(128, dtype=bool)
    rank = len(under)
    if len(before) != 4 or rank > 3:
        return allowed
    candidates = np.arange(128)
    came_from = before[rank]
    move = candidates - came_from
    pairs = [(before[j], under[j], before[rank]) for j in range(rank)]  # (from, to) of the lower voice
    for low_from, low_to, high_from in pairs:
        was = high_from - low_from
        if was <= 0 or was % 12 not in (0, 7) or low_to == low_from:
            continue
        same_way = move * (low_to - low_from) > 0
        allowed &= ~(same_way & (candidates >= low_to) & ((candidates - low_to) % 12 == was % 12))
    if top is not None and rank < 3 and top != before[3]:
        was = before[3] - came_from
        if was > 0 and was % 12 in (0, 7):
            same_way = move * (top - before[3]) > 0
            allowed &= ~(same_way & (candidates < top) & ((top - candidates) % 12 == was % 12))
    return allowed


class PassingNotes(Constraint):
    """Passing eighths where a voice moves by a third from one beat to the next, as often as the style's
    training pieces fill such thirds (ml.generation.figuration; the rates per voice in the model file).

    Written after the notes, as figuration: the network does not read them. Where the model file has
    no rates for the style (a single line, a model fitted before them) it adds nothing.
    """

    name = "passing"
    describes = ("a voice that moves by a third from beat to beat passes through the note between, as "
                 "often as in the style's training pieces")

    def __init__(self, rates: list[float]) -> None:
        self.rates = list(rates)

    def figure(self, piece: GeneratedPiece, style: str, within: tuple[float, float] | None = None) -> GeneratedPiece:
        """The piece with its passing notes `within` a stretch (seconds; by default all that follows
        its primer: the notes of a piece being continued are left alone)."""
        ranges = voices.VOICE_RANGES.get(style)
        if ranges is None or len(ranges) != len(self.rates):
            return piece
        rng = np.random.default_rng([piece.seed, 23])
        notes = passing_notes(piece.notes, piece.key[0], piece.key[1], self.rates, rng, ranges=ranges,
                              within=within or (piece.primer_end, math.inf))
        return replace(piece, notes=notes)


# In the order the sampler applies them (the order does not change what they allow together).
CONSTRAINTS: dict[str, type[Constraint]] = {
    c.name: c for c in (KeyScale, PitchRange, Register, Repeats, Metre, Cadence, VoiceLeading, Loops,
                        ChordTargets, GivenMelody, Drift, PassingNotes)
}
# Constraints that act only when the request asks for them (chords, a melody), with what they need.
REQUESTED = ("chords", "melody")
# Constraints that act where the model file holds what they need (the drift tables, the passing
# rates), as the product's defaults: every constraint off switches them off too.
FROM_MODEL = ("drift", "passing")


def build_constraints(off: frozenset[str] = frozenset(), *, chords: list[ChordSpan] | None = None,
                      melody: list[tuple[float, int, float, float]] | None = None,
                      drift: dict[str, object] | None = None,
                      passing: list[float] | None = None) -> list[Constraint]:
    """Every constraint except those named in `off`, and the requested ones that were asked for;
    ValueError names an unknown one."""
    unknown = sorted(set(off) - set(CONSTRAINTS))
    if unknown:
        raise ValueError(f"Unknown constraint {', '.join(unknown)}: choose from {', '.join(CONSTRAINTS)}.")
    built: list[Constraint] = [cls() for name, cls in CONSTRAINTS.items()
                               if name not in off and name not in REQUESTED and name not in FROM_MODEL]
    if chords and "chords" not in off:
        built.append(ChordTargets(chords))
    if melody and "melody" not in off:
        built.append(GivenMelody(melody))
    if drift and "drift" not in off:
        built.append(Drift(drift))
    if passing and "passing" not in off:
        built.append(PassingNotes(passing))
    return built


def no_parallels(before: list[int], chord: list[int]) -> np.ndarray:
    """Pitches for the next note of `chord` that make no parallel fifth or octave with a note below it.

    `before` is what sounded at the previous onset. Each voice is taken to come from the nearest
    pitch that sounded before (voices move by small steps); a pair moves in parallels when both
    voices move the same way and keep a perfect fifth or octave (or a compound of one).
    """
    allowed = np.ones(128, dtype=bool)
    if not before or not chord:
        return allowed
    previous = np.array(before)
    candidates = np.arange(128)
    came_from = previous[np.abs(previous[None, :] - candidates[:, None]).argmin(axis=1)]
    for low in chord:
        low_from = int(previous[np.abs(previous - low).argmin()])
        if low_from == low:
            continue  # a voice that does not move makes no parallels
        interval = came_from - low_from
        same_way = np.sign(candidates - came_from) == np.sign(low - low_from)
        parallel = ((interval > 0) & np.isin(interval % 12, (0, 7)) & ((candidates - low) % 12 == interval % 12)
                    & (candidates > low) & (candidates != came_from) & same_way)
        allowed &= ~parallel
    return allowed


def completes_without_parallels(before: list[int], present: list[int], candidates: np.ndarray) -> np.ndarray:
    """Which of `candidates` complete `present` (three notes) to a four-note chord that moves from
    `before` (four notes) with no two voices, paired by rank from the bass, in parallel perfect
    fifths or octaves (both moving the same way, a fifth or octave apart in both chords)."""
    allowed = np.ones(128, dtype=bool)
    candidates = np.asarray(candidates, dtype=np.int64)
    if not len(candidates):
        return allowed
    old = np.sort(np.asarray(before, dtype=np.int64))
    new = np.sort(np.column_stack([np.tile(np.asarray(present, dtype=np.int64), (len(candidates), 1)),
                                   candidates]), axis=1)
    lower, upper = np.triu_indices(4, 1)  # the six voice pairs
    was = old[upper] - old[lower]
    perfect = (was > 0) & np.isin(was % 12, (0, 7))
    still = (new[:, upper] - new[:, lower]) % 12 == was % 12
    move = new - old
    similar = move[:, lower] * move[:, upper] > 0  # both voices move, the same way
    parallel = (perfect & still & similar).any(axis=1) & ~(new == old).all(axis=1)
    allowed[candidates[parallel]] = False
    return allowed


def _loops(pitches: list[int]) -> bool:
    """Whether a run of pitches holds a loop: a pitch SAME_PITCH_RUN times running, or a figure of
    L pitches FIGURE_RUNS[L] times running."""
    p = np.asarray(pitches)
    for length, runs in ((1, SAME_PITCH_RUN), *FIGURE_RUNS.items()):
        need = length * (runs - 1)  # positions whose pitch returns `length` notes later
        if len(p) < need + length:
            continue
        same = np.concatenate([[0], (p[length:] == p[:-length]).astype(np.int64)])
        run = np.cumsum(same)
        if ((run[need:] - run[:-need]) == need).any():
            return True
    return False


def loops_across(history: list[int], candidates: np.ndarray, upcoming: list[int]) -> np.ndarray:
    """The candidate pitches that, as the last note before a copied passage, make a loop with it
    (one that the passage alone, or the notes before it alone, do not make)."""
    def looped(middle: int) -> bool:
        return _loops(history[-LOOP_SPAN:] + [middle] + upcoming[:LOOP_SPAN])

    if looped(-1):  # a loop that no note here can break (nor make): nothing to ban
        return candidates[:0]
    return np.array([p for p in candidates if looped(int(p))], dtype=np.int64)


def loop_completions(history: list[int]) -> set[int]:
    """Pitches that, played next, would complete a loop."""
    banned = set()
    for length, runs in ((1, SAME_PITCH_RUN), *FIGURE_RUNS.items()):
        needed = length * runs - 1
        if len(history) < needed:
            continue
        tail = history[-needed:]
        if all(tail[i] == tail[i + length] for i in range(needed - length)):
            banned.add(int(tail[-length]))
    return banned
