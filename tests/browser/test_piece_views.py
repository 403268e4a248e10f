"""The piece page of each style, as a musician first sees it: the player, the roll with its voices,
bars and chords, and the engraved score, at desktop and phone widths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from compositions import tasks
from ml.audio.arrangement import arrange
from ml.data.notes import NoteSequence
from ml.pipeline import chord_changes, piano_roll
from tests.browser.session import sign_in
from tests.conftest import current

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Set to a folder to keep the screenshots (each style, desktop and phone) for a look.
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR", "")
STYLES = ("chorale", "string-quartet", "renaissance", "fiddle", "folk")


def texture(style: str) -> NoteSequence:
    """Eight bars of 4/4 at 120: four voices on a I-IV-V-I progression, or a tune over it."""
    progression = [(48, 64, 67, 72), (53, 65, 69, 72), (55, 62, 67, 71), (48, 64, 67, 72)] * 2
    if style in ("fiddle", "folk"):
        tune = [72, 74, 76, 77, 79, 77, 76, 74] * 4
        return NoteSequence.from_notes(start=np.arange(32) * 0.5, pitch=np.array(tune), duration=np.full(32, 0.5),
                                       velocity=np.full(32, 90), tempo_bpm=120, time_signature=(4, 4))
    starts = np.repeat(np.arange(16) * 1.0, 4)
    pitches = np.array([chord for chord in progression for _ in range(2)]).ravel()
    return NoteSequence.from_notes(start=starts, pitch=pitches, duration=np.full(64, 1.0), velocity=np.full(64, 80),
                                   tempo_bpm=120, time_signature=(4, 4))


def form(bars: int = 8) -> dict[str, Any]:
    phrases = [{"letter": letter, "start": start * 16.0, "end": start * 16.0 + 16.0, "start_s": start * 8.0,
                "end_s": start * 8.0 + 8.0, "first_bar": start * 4 + 1, "last_bar": start * 4 + 4,
                "repeat_of": None, "varied": False, "cadence": True} for start, letter in enumerate("AB")]
    return {"form": "AB", "bars": bars, "bar_beats": 4.0, "key": "C major", "time_signature": "4/4",
            "tempo_bpm": 120.0, "phrases": phrases}


@pytest.fixture
def pieces(user_factory: Any, composition_factory: Any, settings: Any) -> dict[str, Any]:
    settings.SCORE_TIMEOUT_SECONDS = 60
    user = user_factory("reader")
    made = {}
    for style in STYLES:
        notes = texture(style)
        arrangement = arrange(notes, style=style, key=(0, "major"))
        piece = composition_factory(
            user, style=style, tempo_bpm=120, files=True, status="done", progress=100,
            notes_json=piano_roll(notes, arrangement.voice_of), chords_json=chord_changes(notes, (0, "major")),
            form_json={**form(), "voices": arrangement.voice_names},
        )
        tasks.composition_version_follow_up(current(piece).id)
        made[style] = piece
    return made



def test_every_style_shows_its_roll_and_score_at_desktop_and_phone_widths(
    browser: Any, live_server: Any, pieces: dict[str, Any]
) -> None:
    for width, height, label in ((1280, 900, "desktop"), (390, 844, "phone")):
        context = browser.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.set_default_timeout(60_000)
        sign_in(page, live_server.url, "reader")
        for style, piece in pieces.items():
            page.goto(f"{live_server.url}/compositions/{piece.public_id}/")
            page.wait_for_selector("#score-view svg g.measure")
            # The score: a staff per voice, its eight bars, and a bar lights up when it plays.
            staves = 1 if style in ("fiddle", "folk") else 4
            assert page.locator("#score-view g.measure").count() == 8
            assert page.locator("#score-view g.measure").first.locator("g.staff").count() == staves
            page.locator("#score-view g.measure").nth(2).scroll_into_view_if_needed()
            box = page.locator("#score-view g.measure").nth(2).bounding_box()
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            assert page.evaluate("document.querySelector('.player audio').currentTime") == pytest.approx(4, abs=0.05)
            assert page.locator("#score-view g.measure.playing").count() == 1
            # The notes in figures: a bar per pitch from the lowest to the highest, and the loudness line.
            low, high = min(n[0] for n in current(piece).notes_json), max(n[0] for n in current(piece).notes_json)
            assert page.locator("#plot-pitch rect").count() == high - low + 1
            assert page.locator("#plot-velocity polyline").count() == 1
            # The roll names its voices; the legend shows one swatch each.
            assert page.locator("#roll-voices .voice-key").count() == (0 if staves == 1 else 4)
            # Nothing is wider than the screen: the roll and the score scroll inside their own boxes.
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            if SCREENSHOTS:
                page.screenshot(path=str(Path(SCREENSHOTS) / f"{style}-{label}.png"), full_page=True)
        context.close()
