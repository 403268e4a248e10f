"""JSON API. Served under /api/v1/; the unversioned /api/ paths are aliases of the same views."""

from __future__ import annotations

from django.urls import path

from compositions import apis

app_name = "api"

urlpatterns = [
    path("auth/register/", apis.RegisterApi.as_view(), name="register"),
    path("auth/token/", apis.TokenCreateApi.as_view(), name="token"),
    path("styles/", apis.StylesApi.as_view(), name="styles"),
    path("primers/", apis.PrimerCreateApi.as_view(), name="primers"),
    path("compositions/", apis.CompositionListApi.as_view(), name="composition-create"),
    path("compositions/<uuid:public_id>/", apis.CompositionDetailApi.as_view(), name="composition-status"),
    path("compositions/<uuid:public_id>/retry/", apis.CompositionRetryApi.as_view(), name="composition-retry"),
    path("compositions/<uuid:public_id>/share/", apis.CompositionShareApi.as_view(), name="composition-share"),
    path(
        "compositions/<uuid:public_id>/audio.mp3",
        apis.CompositionMp3Api.as_view(),
        name="composition-mp3",
    ),
    path(
        "compositions/<uuid:public_id>/score.mid",
        apis.CompositionMidiApi.as_view(),
        name="composition-midi",
    ),
]
