"""Top-level URL map: pages, accounts, the API and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from compositions import account_views, views
from compositions.apis.routing import api_not_found

urlpatterns = [
    path("", views.home, name="home"),
    path("signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout-everywhere/", views.logout_everywhere, name="logout-everywhere"),
    path("accounts/", account_views.account, name="account"),
    path("accounts/tokens/", account_views.account_token_create, name="account-token-create"),
    path("accounts/tokens/<int:token_id>/revoke/", account_views.account_token_revoke, name="account-token-revoke"),
    path("accounts/email/", account_views.account_email, name="account-email"),
    path("accounts/delete/", account_views.account_delete, name="account-delete"),
    path("accounts/export/", account_views.account_export_create, name="account-export-create"),
    path("accounts/export/<uuid:public_id>/download.zip", account_views.account_export_download,
         name="account-export-download"),
    path("accounts/password_reset/", account_views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("compositions/", include("compositions.urls")),
    path("gallery/", views.gallery, name="gallery"),
    path("s/<str:token>/", views.shared, name="shared"),
    path("s/<str:token>/audio.mp3", views.shared_file, {"kind": "mp3"}, name="shared-mp3"),
    path("s/<str:token>/score.mid", views.shared_file, {"kind": "midi"}, name="shared-midi"),
    path("s/<str:token>/score.svg", views.shared_file, {"kind": "svg"}, name="shared-score-svg"),
    path("s/<str:token>/score.musicxml", views.shared_file, {"kind": "musicxml"}, name="shared-musicxml"),
    path("s/<str:token>/play/", views.shared_play, name="shared-play"),
    path("api/v1/", include("compositions.api_urls", namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    # The first API had no version in its paths; they stay, as aliases of /api/v1/.
    path("api/", include("compositions.api_urls", namespace="api-unversioned")),
    # Any other path under /api/: JSON 404, DEBUG on or off (no slash is appended here).
    re_path(r"^api/", api_not_found),
    path("admin/", admin.site.urls),
]

handler404 = "compositions.views.not_found"
