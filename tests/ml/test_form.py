from __future__ import annotations

from collections import Counter

import pytest

from ml.generation.form import THROUGH, cadence_beat, check_form, plan_form, plan_from_dict, style_phrase_bars


def test_aabb_lays_out_four_phrases_whose_repeats_point_at_their_model() -> None:
    plan = plan_form("AABB", phrase_bars=4, total_bars=16, bar_beats=4.0)
    assert plan.letters == "AABB"
    assert [(p.start, p.end) for p in plan.phrases] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert [p.copy_of for p in plan.phrases] == [None, 0, None, 2]
    assert plan.phrases[1].copy_until == 12  # a repeat with a second ending: its last bar leads on to B
    # The last phrase repeats B but writes its own last two bars: the dominant, and the tonic held.
    last = plan.phrases[-1]
    assert last.final and last.copy_until == 8 and last.cadence_at == 60
    assert [p.cadence for p in plan.phrases] == [False, True, False, True]


def test_a_form_shorter_than_the_piece_is_played_again_and_a_longer_one_gets_shorter_phrases() -> None:
    long = plan_form("AABB", phrase_bars=4, total_bars=32, bar_beats=3.0)
    assert long.letters == "AABBAABB" and long.beats == 96 and long.form == "AABBAABB"
    assert long.phrases[4].copy_of == 0 and long.phrases[4].copy_until == 12  # the second time through: as the first
    # ... but A has been heard three times (one with its second ending): the fourth keeps its first half.
    assert long.phrases[5].copy_of == 0 and long.phrases[5].copy_until == 6
    many = plan_form("AA", phrase_bars=4, total_bars=16, bar_beats=4.0)
    # A fourth hearing note for note would be one too many: it keeps only its first half.
    assert [p.copy_until for p in many.phrases] == [0, 16, 16, 8]
    # Too short for the whole form at its phrase length: its first phrases; two 4-bar phrases would make
    # 6 bars 8, more than a tempo can make up, so they are 3 bars each.
    short = plan_form("AABA", phrase_bars=4, total_bars=6, bar_beats=4.0)
    assert short.letters == "AA" and short.form == "AA" and short.bars == 6
    assert plan_form("AABB", phrase_bars=4, total_bars=11, bar_beats=4.0).letters == "AAB"
    tiny = plan_form("AABB", phrase_bars=4, total_bars=1, bar_beats=4.0)
    assert tiny.letters == "A" and tiny.bars == 1 and tiny.phrases[0].final


def test_a_piece_is_whole_phrases_of_the_planned_length() -> None:
    # 14 bars of a fiddle tune were 3+3+4+4; the piece is now 16 bars, four phrases of four.
    plan = plan_form("AABB", phrase_bars=4, total_bars=14, bar_beats=4.0)
    assert plan.bars == 16 and [p.end - p.start for p in plan.phrases] == [16.0] * 4
    assert plan_form("AABB", phrase_bars=4, total_bars=17, bar_beats=4.0).bars == 16


@pytest.mark.parametrize("form, phrase_bars", [("AABB", 4), ("ABA", 4), ("AABA", 4), ("AAB", 2), ("ABAC", 4),
                                               ("AB", 8), ("AA", 4)])
@pytest.mark.parametrize("bars", [8, 12, 16, 24, 40, 64, 100, 160, 250])
def test_at_every_length_no_phrase_is_heard_note_for_note_more_than_three_times(form: str, phrase_bars: int,
                                                                                 bars: int) -> None:
    plan = plan_form(form, phrase_bars=phrase_bars, total_bars=bars, bar_beats=4.0, mode="minor")
    # Every return counts, a new ending or not (the ending may come out as before).
    heard = Counter(p.copy_of if p.copy_of is not None and p.copy_until > (p.end - p.start) / 2 else i
                    for i, p in enumerate(plan.phrases))
    assert max(heard.values()) <= 3
    lengths = {p.end - p.start for p in plan.phrases}
    assert len(lengths) == 1  # every phrase as long as the others
    if lengths != {phrase_bars * 4.0}:  # only where whole phrases would miss the length by over a fifth
        count = max(1, int(bars / phrase_bars + 0.5))
        assert abs(count * phrase_bars - bars) > 0.2 * bars
    assert abs(plan.bars - bars) <= max(phrase_bars / 2, 0.2 * bars)
    # The form the plan is named by is the one its lane shows: its phrases' letters, or in a long
    # piece its sections' letters, one per section.
    sections = [next(p.letter[0] for p in plan.phrases if p.section == s)
                for s in sorted({p.section for p in plan.phrases})]
    assert plan.form == ("".join(sections) if len(sections) > 1 else plan.letters)
    assert plan.phrases[-1].key == 0  # the piece ends at home


def test_a_long_piece_is_planned_in_sections_with_a_contrast_in_a_related_key() -> None:
    plan = plan_form("ABA", phrase_bars=4, total_bars=250, bar_beats=4.0, mode="minor")
    assert plan.form == "ABA" and plan.bars == 252
    by_section = {s: [p for p in plan.phrases if p.section == s] for s in range(3)}
    assert {p.key for p in by_section[1]} == {3}  # B: the relative major
    assert {p.key for p in by_section[0] + by_section[2]} == {0}
    themes = {p.letter for p in by_section[0]}
    assert len(themes) >= 10  # many tunes, not one heard 40 times
    # The returning A repeats the first A's phrases (each exactly, or with its second half anew).
    first = [p.letter for p in by_section[0]]
    assert [p.letter for p in by_section[2]][:len(first)] == first
    assert all(p.copy_of is not None for p in by_section[2][:len(first) - 1])
    major = plan_form("AABA", phrase_bars=4, total_bars=100, bar_beats=4.0, mode="major")
    assert {p.key for p in major.phrases if p.letter.startswith("B")} == {7}  # B: the dominant
    assert {p.key for p in plan_form("AABB", phrase_bars=4, total_bars=100, bar_beats=4.0).phrases} == {0}


@pytest.mark.parametrize("text, expected", [("aabb", "AABB"), (" AABA ", "AABA"), ("through", THROUGH),
                                            ("Through-composed", THROUGH)])
def test_forms_are_spelled_one_way(text: str, expected: str) -> None:
    assert check_form(text) == expected


@pytest.mark.parametrize("text, message", [("XYZ", "letters A to H"), ("BA", "starts with its A"),
                                           ("A" * 17, "letters A to H"), ("AB1", "letters A to H")])
def test_bad_forms_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_form(text)


def test_the_plan_as_the_site_shows_it_numbers_bars_from_one() -> None:
    data = plan_form("AB", phrase_bars=2, total_bars=4, bar_beats=3.0).to_dict()
    assert [(p["letter"], p["first_bar"], p["last_bar"]) for p in data["phrases"]] == [("A", 1, 2), ("B", 3, 4)]


def test_a_chorale_in_four_four_rests_on_beat_three_and_its_last_chord_on_the_downbeat() -> None:
    beat = cadence_beat("chorale", (4, 4))
    assert beat == 2.0 and cadence_beat("chorale", (3, 4)) == 0.0 and cadence_beat("fiddle", (4, 4)) == 0.0
    plan = plan_form("ABABCD", phrase_bars=2, total_bars=12, bar_beats=4.0, cadences="every", cadence_beat=beat)
    inner, last = plan.phrases[:-1], plan.phrases[-1]
    assert all(p.cadence and p.cadence_at == p.end - 2.0 for p in inner)
    assert last.final and last.cadence_at == last.end - 4.0
    # The stored plan keeps where each phrase closes (a regenerated passage reads it back).
    again = plan_from_dict(plan.to_dict())
    assert [p.cadence_at for p in again.phrases] == [p.cadence_at for p in plan.phrases]
    # A beat past the bar is no place in it: the downbeat.
    assert plan_form("AB", phrase_bars=2, total_bars=4, bar_beats=4.0, cadence_beat=4.0).phrases[0].cadence_at == 4.0


def test_a_chorale_phrases_as_bach_does_in_its_metre() -> None:
    # Between two fermatas: 8 beats in 4/4 (two bars), 12 in 3/4 (four bars, not two bars of six beats,
    # half of them a held cadence).
    assert style_phrase_bars("chorale", (4, 4)) == 2 and style_phrase_bars("chorale", (3, 4)) == 4
    # Elsewhere a phrase is counted in bars of about four beats.
    assert [style_phrase_bars("fiddle", m) for m in ((4, 4), (3, 4), (6, 8), (2, 4), (4, 2))] == [4, 4, 4, 8, 2]
    assert style_phrase_bars("renaissance", (3, 2)) == 2 and style_phrase_bars("unknown", (2, 4)) == 8


def test_the_network_is_told_of_inner_cadences_only_where_its_training_pieces_marked_them() -> None:
    from dataclasses import replace

    plan = plan_form("AABB", phrase_bars=4, total_bars=16, bar_beats=4.0)
    inner = [p.cadence_at for p in plan.phrases if p.cadence and not p.final]
    assert inner == [28.0]  # AABB: the second A leads to B
    assert plan.next_signal(0.0) == plan.next_cadence(0.0) == 28.0
    # Trained on pieces that mark only their end: every onset is told of the last cadence alone.
    told = replace(plan, signalled=False)
    assert told.next_cadence(0.0) == 28.0 and told.next_signal(0.0) == 60.0 and told.next_signal(20.0) == 60.0
    assert told.next_signal(60.5) is None


def test_a_return_after_other_music_is_ornamented_and_a_repeat_or_restated_strain_is_not() -> None:
    def ornamented(form: str, count: int) -> list[bool]:
        return [p.ornamented for p in plan_form(form, phrase_bars=4, total_bars=4 * count, bar_beats=4.0).phrases]

    assert ornamented("AABA", 4) == [False, False, False, True]  # the last A comes back after B
    assert ornamented("ABA", 3) == [False, False, True]
    assert ornamented("AABB", 4) == [False] * 4  # straight repeats, as with repeat signs
    assert ornamented("ABAB", 4) == [False] * 4  # the strain AB restated whole
    assert ornamented("ABABCD", 6) == [False] * 6  # a chorale's Stollen sung twice
    assert ornamented("ABABCD", 3) == [False] * 3  # ... even where the piece ends before its B
    assert ornamented("AABBAABB", 8) == [False] * 8  # the tune played again as it was
    assert ornamented("AABBA", 5) == [False, False, False, False, True]
    plan = plan_form("AABA", phrase_bars=4, total_bars=16, bar_beats=4.0)
    shown = plan.to_dict()["phrases"]
    assert [p["ornamented"] for p in shown] == [False, False, False, True]
    assert shown[3]["varied"]  # the lane shows it as A′
    assert [p.ornamented for p in plan_from_dict(plan.to_dict()).phrases] == [False, False, False, True]
