"""Reads: what a user may see of compositions, and how their status is reported."""

from __future__ import annotations

import uuid
from typing import TypedDict

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet
from django.http import Http404
from django.urls import reverse

from compositions.models import Composition


class CompositionStatus(TypedDict):
    """The payload the progress bar polls."""

    id: str
    status: str
    progress: int
    message: str
    error: str
    mp3_url: str | None
    midi_url: str | None


def composition_list_for_user(*, user: AbstractBaseUser) -> QuerySet[Composition]:
    """The user's compositions, newest first."""
    return Composition.objects.filter(user=user).defer("notes_json")


def composition_get_for_user(*, user: AbstractBaseUser, public_id: uuid.UUID | str) -> Composition:
    """The user's composition `public_id`; Http404 for anyone else's, so its existence stays hidden."""
    composition = Composition.objects.filter(user=user, public_id=public_id).first()
    if composition is None:
        raise Http404("No such composition.")
    return composition


def composition_batch(*, composition: Composition) -> QuerySet[Composition]:
    """All variations requested together with `composition`, in order."""
    return Composition.objects.filter(batch_id=composition.batch_id, user_id=composition.user_id).order_by(
        "variation_index"
    )


def composition_status(*, composition: Composition) -> CompositionStatus:
    """Where `composition` stands, with download URLs once it is done."""
    done = composition.status == Composition.Status.DONE
    return {
        "id": str(composition.public_id),
        "status": composition.status,
        "progress": composition.progress,
        "message": composition.status_message,
        "error": composition.error,
        "mp3_url": reverse("compositions:mp3", args=[composition.public_id]) if done else None,
        "midi_url": reverse("compositions:midi", args=[composition.public_id]) if done else None,
    }
