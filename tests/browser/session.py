"""Signing in as a person does: the login form, in the browser page itself."""

from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD


def sign_in(page: Any, base: str, username: str) -> None:
    """Log `username` in through the login page; returns once the site has sent them to their pieces."""
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url("**/compositions/")
