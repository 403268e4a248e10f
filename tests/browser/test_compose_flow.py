from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import sign_up
from tests.browser.session import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_new_user_signs_up_composes_a_piece_and_hears_an_mp3(page: Any, live_server: Any, style: str) -> None:
    sign_up(page, live_server.url, "listener")

    page.select_option("#id_style", style)
    page.fill("#id_seconds", "5")
    page.fill("#id_seed", "11")
    page.click("main button[type=submit]")

    # With Q sync the piece is finished by the time the detail page loads; the poller copes either way.
    audio = page.wait_for_selector("audio[src]", timeout=120_000)
    src = audio.get_attribute("src")
    response = page.request.get(f"{live_server.url}{src}")
    assert response.status == 200
    assert response.headers["content-type"] == "audio/mpeg"
    assert response.body()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")
    assert page.locator("#piano-roll").is_visible()


def test_the_chord_lane_names_the_chords_above_the_piano_roll(
    page: Any, live_server: Any, user_factory: Any, composition_factory: Any
) -> None:
    user = user_factory("harmonist")
    piece = composition_factory(
        user, status="done", progress=100,
        notes_json=[[48, 0.0, 1.0, 80], [64, 0.0, 1.0, 80], [67, 0.0, 1.0, 80], [43, 1.0, 1.0, 80],
                    [59, 1.0, 1.0, 80], [65, 1.0, 1.0, 80], [72, 2.0, 2.0, 80]],
        chords_json=[[0.0, "C major triad"], [1.0, "G dominant seventh chord"], [2.0, None]],
        form_json={"form": "AB", "bars": 2, "key": "C major", "phrases": [
            {"letter": "A", "start_s": 0.0, "end_s": 2.0, "first_bar": 1, "last_bar": 1, "repeat_of": None,
             "varied": False, "cadence": True},
            {"letter": "B", "start_s": 2.0, "end_s": 4.0, "first_bar": 2, "last_bar": 2, "repeat_of": None,
             "varied": False, "cadence": True}]},
    )
    sign_in(page, live_server.url, "harmonist")

    page.goto(f"{live_server.url}/compositions/{piece.public_id}/")
    chords = page.locator("#chord-lane .chord")
    assert chords.all_inner_texts() == ["C", "G7"]
    assert chords.nth(1).get_attribute("title") == "G dominant seventh chord at 1.0 s"
    lane, roll = page.locator("#chord-lane").bounding_box(), page.locator("#piano-roll").bounding_box()
    assert lane["y"] + lane["height"] <= roll["y"] + 1  # above the roll, on the same time axis
    second = chords.nth(1).bounding_box()
    assert second["x"] == pytest.approx(page.evaluate("pianoRoll.xOf(1)"), abs=2)  # 1 s of a 4 s piece
    assert second["x"] - lane["x"] == pytest.approx(lane["width"] / 4, abs=2)
    # The form lane: the phrase letters over the roll, B starting halfway through the 4 s piece.
    phrases = page.locator("#form-lane .phrase")
    assert phrases.all_inner_texts() == ["A", "B"]
    assert phrases.nth(1).bounding_box()["x"] == pytest.approx(page.evaluate("pianoRoll.xOf(2)"), abs=2)
    assert "bars 2\u20132" in phrases.nth(1).get_attribute("title")
    assert "form AB, 2 bars" in page.locator("main").inner_text()


def test_the_roll_seeks_where_it_is_clicked_zooms_and_reads_from_the_keyboard(
    page: Any, live_server: Any, user_factory: Any, composition_factory: Any
) -> None:
    user = user_factory("player")
    notes = [[60 + (i % 12), i * 0.5, 0.5, 80, i % 2] for i in range(16)]
    piece = composition_factory(
        user, status="done", progress=100, notes_json=notes, chords_json=[],
        form_json={"form": "A", "bars": 2, "bar_beats": 4, "key": "C major", "time_signature": "4/4",
                   "tempo_bpm": 60, "voices": ["Violin I", "Violin II"], "phrases": [
                       {"letter": "A", "start": 0, "end": 8, "start_s": 0.0, "end_s": 8.0, "first_bar": 1,
                        "last_bar": 2, "repeat_of": None, "varied": False, "cadence": True}]},
    )
    sign_in(page, live_server.url, "player")
    page.goto(f"{live_server.url}/compositions/{piece.public_id}/")
    roll = page.locator("#piano-roll").bounding_box()
    # A click at 3 s plays from there (a drag would pick bars: this is the owner's page).
    page.mouse.click(page.evaluate("pianoRoll.xOf(3)"), roll["y"] + roll["height"] / 2)
    assert page.evaluate("document.querySelector('.player audio').currentTime") == pytest.approx(3, abs=0.05)
    assert "bar 1" in page.inner_text("#roll-info")
    # The voices have their own colours, named in the legend.
    assert page.locator("#roll-voices .voice-key").all_inner_texts() == ["Violin I", "Violin II"]
    # Zoom in: the time axis grows and scrolls; "Whole piece" fits it again.
    before = page.evaluate("pianoRoll.xOf(4) - pianoRoll.xOf(0)")
    page.click("[data-zoom=in]")
    page.click("[data-zoom=in]")
    assert page.evaluate("pianoRoll.xOf(4) - pianoRoll.xOf(0)") == pytest.approx(before * 1.6 * 1.6, rel=0.02)
    assert page.evaluate("document.getElementById('roll-scroll').scrollWidth > "
                         "document.getElementById('roll-scroll').clientWidth")
    page.click("[data-zoom=fit]")
    assert page.evaluate("pianoRoll.xOf(4) - pianoRoll.xOf(0)") == pytest.approx(before, rel=0.02)
    # The keyboard: a bar on with Shift+Right, a beat back with Left.
    page.focus("#roll")
    page.keyboard.press("Shift+ArrowRight")
    assert page.evaluate("document.querySelector('.player audio').currentTime") == pytest.approx(7, abs=0.05)
    page.keyboard.press("ArrowLeft")
    assert page.evaluate("document.querySelector('.player audio').currentTime") == pytest.approx(6, abs=0.05)
