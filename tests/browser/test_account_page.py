"""The account page in Chromium: on a phone nothing runs off the side and every token can be revoked."""

from __future__ import annotations

from typing import Any

import pytest

from compositions.services.accounts import api_token_create
from tests.browser.session import sign_in

pytestmark = [pytest.mark.browser]


def test_the_account_page_fits_a_phone_and_each_token_can_be_revoked_there(
    browser: Any, live_server: Any, user_factory: Any,
) -> None:
    user = user_factory("pocket")
    for name in ("Alice's phone", "The laptop in the kitchen"):
        api_token_create(user=user, name=name)
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    sign_in(page, live_server.url, "pocket")
    page.goto(f"{live_server.url}/accounts/")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing runs off the side
    revoke = page.locator(".token-table button", has_text="Revoke")
    assert revoke.count() == 2
    for index in range(2):  # whole on the screen, not behind a sideways scroll
        box = revoke.nth(index).bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390, box
    page.on("dialog", lambda dialog: dialog.accept())
    revoke.first.click()
    page.wait_for_load_state()
    assert page.locator(".token-table button", has_text="Revoke").count() == 1
    phone.close()
