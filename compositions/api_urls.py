"""JSON API. Served under /api/v1/; the unversioned /api/ paths are aliases of the same views."""

from __future__ import annotations

from django.urls import path

from compositions.apis.accounts import (
    AccountDeleteApi,
    RegisterApi,
    TokenCreateApi,
    TokenDeleteApi,
    TokenListApi,
    TokenRevokeApi,
)
from compositions.apis.composing import (
    CompositionCancelApi,
    CompositionCreateApi,
    CompositionDeleteApi,
    CompositionDetailApi,
    CompositionRetryApi,
    PrimerCreateApi,
    StylesApi,
)
from compositions.apis.exports import AccountExportCreateApi, AccountExportDetailApi, AccountExportDownloadApi
from compositions.apis.files import (
    CompositionMidiApi,
    CompositionMp3Api,
    CompositionMusicXmlApi,
    CompositionScoreSvgApi,
)
from compositions.apis.gallery import CompositionListApi, CompositionShareApi, CompositionUpdateApi
from compositions.apis.routing import method_router
from compositions.apis.versions import (
    CompositionRegenerateApi,
    CompositionVersionCreateApi,
    CompositionVersionCurrentApi,
    CompositionVersionDeleteApi,
    CompositionVersionDetailApi,
    CompositionVersionListApi,
)

app_name = "api"

urlpatterns = [
    path("auth/register/", RegisterApi.as_view(), name="register"),
    path("auth/token/", method_router(post=TokenCreateApi, delete=TokenDeleteApi), name="token"),
    path("auth/tokens/", TokenListApi.as_view(), name="tokens"),
    path("auth/tokens/<int:token_id>/", TokenRevokeApi.as_view(), name="token-revoke"),
    path("auth/account/", AccountDeleteApi.as_view(), name="account"),
    path("styles/", StylesApi.as_view(), name="styles"),
    path("primers/", PrimerCreateApi.as_view(), name="primers"),
    path("compositions/", method_router(get=CompositionListApi, post=CompositionCreateApi),
         name="composition-list"),
    path(
        "compositions/<uuid:public_id>/",
        method_router(get=CompositionDetailApi, patch=CompositionUpdateApi, delete=CompositionDeleteApi),
        name="composition-detail",
    ),
    path("compositions/<uuid:public_id>/cancel/", CompositionCancelApi.as_view(), name="composition-cancel"),
    path("compositions/<uuid:public_id>/retry/", CompositionRetryApi.as_view(), name="composition-retry"),
    path("compositions/<uuid:public_id>/share/", CompositionShareApi.as_view(), name="composition-share"),
    path("compositions/<uuid:public_id>/regenerate/", CompositionRegenerateApi.as_view(),
         name="composition-regenerate"),
    path("compositions/<uuid:public_id>/versions/",
         method_router(get=CompositionVersionListApi, post=CompositionVersionCreateApi), name="composition-versions"),
    path("compositions/<uuid:public_id>/versions/<int:number>/",
         method_router(get=CompositionVersionDetailApi, delete=CompositionVersionDeleteApi),
         name="composition-version"),
    path("compositions/<uuid:public_id>/versions/<int:number>/current/", CompositionVersionCurrentApi.as_view(),
         name="composition-version-current"),
    path("compositions/<uuid:public_id>/audio.mp3", CompositionMp3Api.as_view(), name="composition-mp3"),
    path("compositions/<uuid:public_id>/score.mid", CompositionMidiApi.as_view(), name="composition-midi"),
    path("compositions/<uuid:public_id>/score.svg", CompositionScoreSvgApi.as_view(), name="composition-score-svg"),
    path("compositions/<uuid:public_id>/score.musicxml", CompositionMusicXmlApi.as_view(),
         name="composition-musicxml"),
    path("auth/export/", AccountExportCreateApi.as_view(), name="account-export"),
    path("auth/export/<uuid:public_id>/", AccountExportDetailApi.as_view(), name="account-export-detail"),
    path("auth/export/<uuid:public_id>/download.zip", AccountExportDownloadApi.as_view(),
         name="account-export-download"),
]
