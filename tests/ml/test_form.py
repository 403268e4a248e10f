from __future__ import annotations

import pytest

from ml.generation.form import THROUGH, check_form, plan_form


def test_aabb_lays_out_four_phrases_whose_repeats_point_at_their_model() -> None:
    plan = plan_form("AABB", phrase_bars=4, total_bars=16, bar_beats=4.0)
    assert plan.letters == "AABB"
    assert [(p.start, p.end) for p in plan.phrases] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert [p.copy_of for p in plan.phrases] == [None, 0, None, 2]
    assert plan.phrases[1].copy_until == 16  # an exact repeat
    # The last phrase repeats B but writes its own last two bars: the dominant, and the tonic held.
    last = plan.phrases[-1]
    assert last.final and last.copy_until == 8 and last.cadence_at == 60
    assert [p.cadence for p in plan.phrases] == [False, True, False, True]


def test_a_form_shorter_than_the_piece_is_played_again_and_a_longer_one_gets_shorter_phrases() -> None:
    long = plan_form("AABB", phrase_bars=4, total_bars=32, bar_beats=3.0)
    assert long.letters == "AABBAABB" and long.beats == 96
    assert long.phrases[4].copy_of == 0  # the second time through repeats the first A
    short = plan_form("AABA", phrase_bars=4, total_bars=6, bar_beats=4.0)
    assert short.letters == "AABA"
    assert sum(p.end - p.start for p in short.phrases) == 24  # whole bars, all of them
    assert all((p.end - p.start) % 4 == 0 for p in short.phrases)


def test_through_composed_has_no_repeats_and_every_plan_ends_on_a_held_cadence() -> None:
    plan = plan_form(THROUGH, phrase_bars=2, total_bars=7, bar_beats=4.0, cadences="every")
    assert all(p.copy_of is None for p in plan.phrases)
    assert len(set(plan.letters)) == len(plan.letters)
    assert all(p.cadence for p in plan.phrases)
    assert plan.phrases[-1].end == 28 and plan.next_cadence(27.0) is None and plan.next_cadence(20.0) == 24


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
