"""A user's walk through the gallery in Chromium: compose, rename, favourite, share, listen, revoke, delete.

Screenshots of the gallery, a shared page and the phone layout go to $SCREENSHOT_DIR when it is
set (kept out of git), to be looked at.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import sign_up

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
SCREENSHOTS = os.environ.get("SCREENSHOT_DIR")


def _shot(page: Any, name: str) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def test_compose_rename_favourite_share_listen_revoke_and_delete(
        page: Any, browser: Any, live_server: Any, style: str) -> None:
    sign_up(page, live_server.url, "walker")
    page.select_option("#id_style", style)
    page.fill("#id_seconds", "5")
    page.click("main button[type=submit]")
    page.wait_for_selector("audio[src]", timeout=120_000)
    detail_url = page.url

    page.fill("#title", "Walking tune")
    page.click("text=Rename")
    page.wait_for_selector("h1:has-text('Walking tune')")
    page.click("text=Add to favourites")
    page.wait_for_selector("h1:has-text('★ Walking tune')")

    page.select_option("#visibility", "unlisted")
    page.click("form.share button[type=submit]")
    link = page.wait_for_selector("#share-url").inner_text()
    assert "/s/" in link

    # A friend opens the link in a fresh browser (no session) and hears it.
    friend = browser.new_context(viewport={"width": 1200, "height": 900})
    other = friend.new_page()
    other.goto(link)
    assert other.title().startswith("Walking tune")
    assert other.locator("meta[property='og:audio']").get_attribute("content").endswith("/audio.mp3")
    assert "walker" not in other.content()  # the owner's name stays private
    other.evaluate("document.querySelector('audio').muted = true")
    other.evaluate("document.querySelector('audio').play()")
    other.wait_for_function("document.querySelector('audio').currentTime > 0.2", timeout=30_000)
    _shot(other, "shared-page")
    mp3 = other.request.get(link + "audio.mp3")
    assert mp3.status == 200 and mp3.headers["content-type"] == "audio/mpeg"

    # Revoke: the old link, files included, is dead at once.
    page.goto(detail_url)
    page.click("text=Revoke this link and make a new one")
    page.wait_for_selector("#share-url")
    assert page.locator("#share-url").inner_text() != link
    assert other.goto(link).status == 404
    assert other.request.get(link + "audio.mp3").status == 404
    friend.close()

    page.goto(f"{live_server.url}/compositions/?favourites=1")
    assert page.locator(".piece-card").count() == 1
    _shot(page, "my-compositions")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(detail_url)  # signed out: the piece is not public, so 404
    assert "Not found" in mobile.content()
    phone.close()

    page.goto(detail_url)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("text=Delete this piece")
    page.wait_for_url("**/compositions/")
    assert page.locator(".piece-card").count() == 0
    assert page.request.get(detail_url).status == 404


def test_the_gallery_and_the_phone_layout(page: Any, browser: Any, live_server: Any, user_factory: Any,
                                          composition_factory: Any) -> None:
    from compositions.services.sharing import composition_share

    owner = user_factory("composer")
    for i, title in enumerate(("Morning chorale", "Harbour reel", "Quiet air")):
        piece = composition_factory(owner, status="done", progress=100, title=title, detected_key="D minor",
                                    duration_seconds=31.0 + i, play_count=i * 3)
        composition_share(composition=piece, visibility="public")
    page.goto(f"{live_server.url}/gallery/?order=popular")
    titles = page.locator(".piece-title").all_inner_texts()
    assert titles == ["Quiet air", "Harbour reel", "Morning chorale"]
    _shot(page, "gallery")
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    mobile = phone.new_page()
    mobile.goto(f"{live_server.url}/gallery/")
    width = mobile.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing runs off the side of a phone
    _shot(mobile, "gallery-phone")
    phone.close()
