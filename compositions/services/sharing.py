"""The gallery and sharing: rename and favourite, visibility and links, play counts."""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from compositions.auth import count_in_window
from compositions.errors import RequestInvalid
from compositions.models import Composition

PLAY_WINDOW_SECONDS = 3600


@transaction.atomic
def composition_update(*, composition: Composition, title: str | None = None,
                       is_favourite: bool | None = None) -> Composition:
    """Rename a piece (an empty title goes back to the generated one) or mark it a favourite."""
    fields: dict[str, Any] = {}
    if title is not None:
        title = " ".join(title.split())
        if len(title) > 120:
            raise RequestInvalid.of("title", "A title has at most 120 characters.")
        fields["title"] = title
    if is_favourite is not None:
        fields["is_favourite"] = bool(is_favourite)
    if fields:
        Composition.objects.filter(id=composition.id).update(**fields)
        composition.refresh_from_db()
    return composition


@transaction.atomic
def composition_share(*, composition: Composition, visibility: str, new_link: bool = False) -> Composition:
    """Make a piece private, unlisted (reached by its link) or public (listed in the gallery).

    An unlisted or public piece has a link token of 256 random bits; `new_link` replaces it, which
    kills the old link at once. Making a piece private kills its link too.
    """
    if visibility not in Composition.Visibility.values:
        raise RequestInvalid.of("visibility", f"Visibility must be one of {', '.join(Composition.Visibility.values)}.")
    token = composition.share_token
    if visibility == Composition.Visibility.PRIVATE:
        token = None
    elif token is None or new_link:
        token = secrets.token_urlsafe(32)
    Composition.objects.filter(id=composition.id).update(visibility=visibility, share_token=token)
    composition.refresh_from_db()
    return composition


def composition_play(*, composition: Composition, listener: str) -> bool:
    """Count a play: once per listener (user id or address) per piece per hour, and at most
    PLAYS_PER_LISTENER_PER_HOUR pieces per listener, so that no one script fills "most played".
    True when counted."""
    window = int(timezone.now().timestamp()) // PLAY_WINDOW_SECONDS
    if not cache.add(f"play:{composition.id}:{listener}:{window}", 1, timeout=PLAY_WINDOW_SECONDS):
        return False
    if count_in_window(f"plays:{listener}:{window}", PLAY_WINDOW_SECONDS) > settings.PLAYS_PER_LISTENER_PER_HOUR:
        return False
    Composition.objects.filter(id=composition.id).update(play_count=F("play_count") + 1)
    return True
