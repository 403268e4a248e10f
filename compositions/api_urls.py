"""JSON API under /api/."""

from __future__ import annotations

from django.urls import path

from compositions import apis

app_name = "api"

urlpatterns = [
    path("compositions/", apis.CompositionCreateApi.as_view(), name="composition-create"),
    path("compositions/<uuid:public_id>/", apis.CompositionStatusApi.as_view(), name="composition-status"),
]
