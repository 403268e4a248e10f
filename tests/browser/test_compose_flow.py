from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_new_user_signs_up_composes_a_piece_and_hears_an_mp3(page: Any, live_server: Any, style: str) -> None:
    page.goto(f"{live_server.url}/signup/")
    page.fill("#id_username", "listener")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/compositions/new/")

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
