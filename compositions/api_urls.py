"""JSON API under /api/."""

from __future__ import annotations

from django.urls import path

from compositions import apis

app_name = "api"

urlpatterns = [
    path("auth/token/", apis.TokenCreateApi.as_view(), name="token"),
    path("compositions/", apis.CompositionCreateApi.as_view(), name="composition-create"),
    path("compositions/<uuid:public_id>/", apis.CompositionStatusApi.as_view(), name="composition-status"),
    path(
        "compositions/<uuid:public_id>/audio.mp3",
        apis.CompositionFileApi.as_view(kind="mp3"),
        name="composition-mp3",
    ),
    path(
        "compositions/<uuid:public_id>/score.mid",
        apis.CompositionFileApi.as_view(kind="midi"),
        name="composition-midi",
    ),
]
