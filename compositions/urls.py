"""Pages under /compositions/."""

from __future__ import annotations

from django.urls import path

from compositions import views

app_name = "compositions"

urlpatterns = [
    path("", views.composition_list, name="list"),
    path("new/", views.composition_new, name="new"),
    path("<uuid:public_id>/", views.composition_detail, name="detail"),
    path("<uuid:public_id>/status.json", views.composition_status, name="status"),
    path("<uuid:public_id>/retry/", views.composition_retry, name="retry"),
    path("<uuid:public_id>/cancel/", views.composition_cancel, name="cancel"),
    path("<uuid:public_id>/delete/", views.composition_delete, name="delete"),
    path("<uuid:public_id>/edit/", views.composition_edit, name="edit"),
    path("<uuid:public_id>/share/", views.composition_share, name="share"),
    path("<uuid:public_id>/again/", views.composition_again, name="again"),
    path("<uuid:public_id>/regenerate/", views.composition_regenerate, name="regenerate"),
    path("<uuid:public_id>/play/", views.composition_play, name="play"),
    path("<uuid:public_id>/versions/<int:number>/current/", views.composition_version_current,
         name="version-current"),
    path("<uuid:public_id>/versions/<int:number>/delete/", views.composition_version_delete, name="version-delete"),
    path("<uuid:public_id>/audio.mp3", views.composition_file, {"kind": "mp3"}, name="mp3"),
    path("<uuid:public_id>/score.mid", views.composition_file, {"kind": "midi"}, name="midi"),
    path("<uuid:public_id>/score.svg", views.composition_file, {"kind": "svg"}, name="score-svg"),
    path("<uuid:public_id>/score.musicxml", views.composition_file, {"kind": "musicxml"}, name="musicxml"),
]
