"""A musician's tools on the piece's page: pick bars on the piano roll, regenerate them, hear the new
version, and go back to version 1."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from compositions.models import Composition
from tests.browser.conftest import sign_up
from tests.conftest import current

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Set to a folder to keep the page's screenshots (phone and desktop) for a look.
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR", "")


def _bar_x(page: Any, bar: int) -> float:
    """The x on the screen of the middle of `bar` on the piano roll (the roll says where its bars are)."""
    return page.evaluate(f"pianoRoll.xOf((pianoRoll.barStart({bar}) + pianoRoll.barStart({bar + 1})) / 2)")


def test_a_musician_selects_bars_regenerates_them_plays_the_new_version_and_goes_back(
        page: Any, live_server: Any, style: str) -> None:
    sign_up(page, live_server.url, "musician")
    page.select_option("#id_style", style)
    page.fill("#id_seconds", "16")
    page.fill("#id_tempo_bpm", "120")
    page.fill("#id_seed", "11")
    page.click("main button[type=submit]")
    page.wait_for_selector("#regenerate", timeout=120_000)  # Q sync: written when the page loads

    piece = Composition.objects.get()
    roll = page.locator("#piano-roll").bounding_box()
    y = roll["y"] + roll["height"] / 2
    page.mouse.move(_bar_x(page, 3), y)
    page.mouse.down()
    page.mouse.move(_bar_x(page, 4), y, steps=5)
    page.mouse.up()
    assert (page.input_value("#first-bar"), page.input_value("#last-bar")) == ("3", "4")
    assert page.locator(".bar-selection").is_visible()
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / "regenerate-desktop.png"), full_page=True)
    page.fill("#regenerate-seed", "5")
    page.click("#regenerate button[type=submit]")

    page.wait_for_selector("#versions", timeout=120_000)
    second = current(piece)
    assert (second.number, second.kind, second.status) == (2, "regenerate", "done")
    assert "Bars 3–4 regenerated from version 1, seed" in page.locator("#versions").inner_text()
    assert "version 2" in page.locator(".page-head").inner_text()
    assert page.locator("#what-was-met").is_visible()
    # The new version plays: the player's file is version 2's.
    played = page.evaluate("""() => new Promise((resolve) => {
        const audio = document.querySelector('.player audio');
        audio.muted = true;
        audio.addEventListener('playing', () => resolve(audio.currentSrc), {once: true});
        audio.play().catch((error) => resolve('refused: ' + error));
    })""")
    assert played.endswith(f"/compositions/{piece.public_id}/audio.mp3"), played
    if SCREENSHOTS:
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(Path(SCREENSHOTS) / "regenerate-phone.png"), full_page=True)
        page.set_viewport_size({"width": 1200, "height": 900})

    # Back to version 1.
    page.locator("#versions .version-item").first.locator("button", has_text="Make current").click()
    page.wait_for_load_state()
    assert current(piece).number == 1
    assert "version 2" not in page.locator(".page-head").inner_text()
