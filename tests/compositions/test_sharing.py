"""Who may see what: the permission matrix, sharing links and their revocation, the gallery and the API v1."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from compositions.models import Composition, CompositionVersion
from compositions.services.accounts import api_token_create
from compositions.services.sharing import composition_share
from tests.conftest import PASSWORD, current, midi_bytes

ACTORS = ("owner", "other", "staff", "anonymous")
KINDS = ("private", "unlisted", "public", "hidden")  # hidden: public, but hidden by a moderator


@pytest.fixture
def pieces(user: User, composition_factory: Callable[..., Composition]) -> dict[str, Composition]:
    made = {}
    for kind in KINDS:
        piece = composition_factory(user, status=CompositionVersion.Status.DONE, progress=100, title=f"{kind} piece",
                                    notes_json=[[60, 0.0, 1.0, 80]], files=True)
        visibility = "public" if kind == "hidden" else kind
        piece = composition_share(composition=piece, visibility=visibility)
        if kind == "hidden":
            Composition.objects.filter(id=piece.id).update(hidden=True)
            piece.refresh_from_db()
        made[kind] = piece
    return made


@pytest.fixture
def clients(user: User, user_factory: Callable[..., User]) -> dict[str, tuple[Client, APIClient]]:
    other = user_factory("other")
    staff = user_factory("staff")
    User.objects.filter(id=staff.id).update(is_staff=True)
    result = {}
    for name, who in (("owner", user), ("other", other), ("staff", staff), ("anonymous", None)):
        page, api = Client(), APIClient()
        if who is not None:
            page.force_login(who)
            api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=who).key}")
        result[name] = (page, api)
    return result


def _allowed(actor: str, kind: str, door: str) -> bool:
    if actor == "owner":
        return door != "share_link" or kind in ("unlisted", "public")
    if kind == "hidden":
        return False
    if door == "share_link":
        return kind in ("unlisted", "public")
    return kind == "public"


def test_the_permission_matrix_every_door_every_actor_every_kind_of_piece(
        pieces: dict[str, Composition], clients: dict[str, tuple[Client, APIClient]]) -> None:
    checked = refused = 0
    for actor in ACTORS:
        page, api = clients[actor]
        for kind, piece in pieces.items():
            pid, token = piece.public_id, piece.share_token
            api_base = f"/api/v1/compositions/{pid}"
            doors: dict[str, list[Any]] = {
                "page": [page.get(f"/compositions/{pid}/"), page.get(f"/compositions/{pid}/audio.mp3"),
                         page.get(f"/compositions/{pid}/score.mid"),
                         page.get(f"/compositions/{pid}/audio.mp3?version=1")],
                "api": [api.get(f"{api_base}/"), api.get(f"{api_base}/audio.mp3"), api.get(f"{api_base}/score.mid"),
                        api.get(f"{api_base}/versions/"), api.get(f"{api_base}/versions/1/"),
                        api.get(f"{api_base}/audio.mp3?version=1")],
                "share_link": [page.get(f"/s/{token}/"), page.get(f"/s/{token}/audio.mp3"),
                               page.get(f"/s/{token}/audio.mp3?version=1"),
                               api.get(f"{api_base}/audio.mp3?share_token={token}"),
                               api.get(f"{api_base}/versions/?share_token={token}"),
                               api.get(f"{api_base}/score.mid?version=1&share_token={token}")]
                if token else [page.get("/s/none/")],
            }
            for door, responses in doors.items():
                for response in responses:
                    checked += 1
                    expected = 200 if _allowed(actor, kind, door) else 404
                    assert response.status_code == expected, (actor, kind, door, response.request["PATH_INFO"])
                    refused += expected == 404
                    if expected == 200 and actor != "owner" and "text/html" in response["Content-Type"]:
                        html = response.content.decode()
                        assert "user1" not in html and "alice" not in html  # never the owner's name
                        assert "Rename" not in html and "Delete this piece" not in html
    assert (checked, refused) == (236, 118)  # 4 actors x 4 pieces x 11-16 doors; the README quotes these


@pytest.mark.parametrize("actor", ["other", "staff", "anonymous"])
def test_nobody_but_the_owner_may_change_a_public_piece_or_its_versions(
        actor: str, pieces: dict[str, Composition], clients: dict[str, tuple[Client, APIClient]],
        version_factory: Callable[..., CompositionVersion]) -> None:
    page, api = clients[actor]
    piece = pieces["public"]
    pid = piece.public_id
    version_factory(piece, status="done")  # version 2, not current
    page_writes = [
        page.post(f"/compositions/{pid}/edit/", {"title": "mine now"}),
        page.post(f"/compositions/{pid}/share/", {"visibility": "private"}),
        page.post(f"/compositions/{pid}/delete/"),
        page.post(f"/compositions/{pid}/again/", {"continue": "1"}),
        page.post(f"/compositions/{pid}/again/", {"harmonise": "1"}),
        page.post(f"/compositions/{pid}/regenerate/", {"first_bar": "1", "last_bar": "1"}),
        page.post(f"/compositions/{pid}/versions/2/current/"),
        page.post(f"/compositions/{pid}/versions/2/delete/"),
    ]
    api_writes = [
        api.patch(f"/api/v1/compositions/{pid}/", {"title": "mine now"}, format="json"),
        api.delete(f"/api/v1/compositions/{pid}/"),
        api.post(f"/api/v1/compositions/{pid}/share/", {"visibility": "private"}, format="json"),
        api.post(f"/api/v1/compositions/{pid}/retry/"),
        api.post(f"/api/v1/compositions/{pid}/versions/", {"kind": "continue"}, format="json"),
        api.post(f"/api/v1/compositions/{pid}/versions/", {"kind": "harmonise"}, format="json"),
        api.post(f"/api/v1/compositions/{pid}/regenerate/", {"bars": [1, 1]}, format="json"),
        api.post(f"/api/v1/compositions/{pid}/versions/2/current/"),
        api.delete(f"/api/v1/compositions/{pid}/versions/2/"),
    ]
    for response in page_writes:  # the pages send a visitor to the login page
        assert response.status_code == (302 if actor == "anonymous" else 404)
    for response in api_writes:
        assert response.status_code == (401 if actor == "anonymous" else 404)
    piece.refresh_from_db()
    assert (piece.title, piece.visibility, piece.current_version.number) == ("public piece", "public", 1)
    assert piece.versions.count() == 2


def test_a_revoked_link_is_dead_at_once_files_included(pieces: dict[str, Composition], client: Client) -> None:
    piece = pieces["unlisted"]
    old = piece.share_token
    assert old and len(old) >= 43  # 32 random bytes, base64: 256 bits
    assert client.get(f"/s/{old}/audio.mp3").status_code == 200
    piece = composition_share(composition=piece, visibility="unlisted", new_link=True)
    for path in (f"/s/{old}/", f"/s/{old}/audio.mp3", f"/s/{old}/score.mid"):
        assert client.get(path).status_code == 404
    assert client.get(f"/s/{piece.share_token}/").status_code == 200
    composition_share(composition=piece, visibility="private")
    assert client.get(f"/s/{piece.share_token}/").status_code == 404


def test_a_shared_page_has_open_graph_tags_that_play(pieces: dict[str, Composition], client: Client) -> None:
    piece = pieces["unlisted"]
    html = client.get(f"/s/{piece.share_token}/").content.decode()
    assert '<meta property="og:title" content="unlisted piece">' in html
    assert f'<meta property="og:audio" content="http://testserver/s/{piece.share_token}/audio.mp3">' in html


def test_plays_are_counted_once_per_listener_per_hour(pieces: dict[str, Composition], client: Client) -> None:
    piece = pieces["public"]
    assert client.post(f"/compositions/{piece.public_id}/play/").json() == {"counted": True}
    assert client.post(f"/compositions/{piece.public_id}/play/").json() == {"counted": False}
    piece.refresh_from_db()
    assert piece.play_count == 1
    assert client.post(f"/compositions/{pieces['private'].public_id}/play/").status_code == 404


@pytest.mark.parametrize("page", ["/", "/gallery/", "shared", "detail"])
def test_a_signed_out_listener_gets_the_cookie_the_play_counter_needs_from_every_page_that_plays(
    pieces: dict[str, Composition], page: str,
) -> None:
    piece = pieces["unlisted"] if page == "shared" else pieces["public"]
    browser = Client(enforce_csrf_checks=True)  # as a browser is: no CSRF exemption
    url = {"shared": f"/s/{piece.share_token}/", "detail": f"/compositions/{piece.public_id}/"}.get(page, page)
    assert browser.get(url).status_code == 200
    token = browser.cookies["csrftoken"].value
    play = f"/s/{piece.share_token}/play/" if page == "shared" else f"/compositions/{piece.public_id}/play/"
    assert browser.post(play).status_code == 403  # without the token, as from another site
    assert browser.post(play, HTTP_X_CSRFTOKEN=token).json() == {"counted": True}
    piece.refresh_from_db()
    assert piece.play_count == 1


def test_one_listener_counts_at_most_so_many_plays_an_hour(
    user: User, composition_factory: Callable[..., Composition], client: Client, settings: Any,
) -> None:
    settings.PLAYS_PER_LISTENER_PER_HOUR = 3
    played = [composition_factory(user, status="done", visibility="public") for _ in range(5)]
    counted = [client.post(f"/compositions/{piece.public_id}/play/").json()["counted"] for piece in played]
    assert counted == [True, True, True, False, False]
    other = Client(REMOTE_ADDR="10.9.8.7")  # another listener is not held back by the first
    assert other.post(f"/compositions/{played[4].public_id}/play/").json() == {"counted": True}


def test_the_gallery_lists_public_pieces_only_and_the_home_page_offers_some(
        pieces: dict[str, Composition], client: Client) -> None:
    html = client.get("/gallery/").content.decode()
    assert "public piece" in html and "private piece" not in html and "hidden piece" not in html
    assert "unlisted piece" not in html
    assert "public piece" in client.get("/").content.decode()


def test_my_compositions_filter_search_favourite_and_rename(
        user: User, user_client: Client, composition_factory: Callable[..., Composition]) -> None:
    waltz = composition_factory(user, status=CompositionVersion.Status.DONE, title="Evening waltz")
    composition_factory(user, status=CompositionVersion.Status.FAILED, title="Broken march")
    user_client.post(f"/compositions/{waltz.public_id}/edit/", {"favourite": "1"})
    assert [c.title for c in user_client.get("/compositions/?favourites=1").context["compositions"]] == [
        "Evening waltz"]
    assert [c.title for c in user_client.get("/compositions/?q=march").context["compositions"]] == ["Broken march"]
    assert [c.title for c in user_client.get("/compositions/?status=done").context["compositions"]] == [
        "Evening waltz"]
    user_client.post(f"/compositions/{waltz.public_id}/edit/", {"title": "  Night   waltz "})
    waltz.refresh_from_db()
    assert (waltz.title, waltz.is_favourite) == ("Night waltz", True)
    user_client.post(f"/compositions/{waltz.public_id}/edit/", {"title": ""})
    waltz.refresh_from_db()
    assert waltz.display_title == waltz.default_title and "·" in waltz.default_title


def test_a_piece_without_a_requested_key_never_claims_major(
        user: User, user_client: Client, composition_factory: Callable[..., Composition]) -> None:
    composition_factory(user, status=CompositionVersion.Status.DONE, detected_key="D minor")
    html = user_client.get("/compositions/").content.decode()
    assert "D minor" in html and "major" not in html


def test_again_with_a_new_seed_and_edit_these_settings(
        user: User, user_client: Client, composition_factory: Callable[..., Composition], queued_tasks: list) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.DONE, seed=5, key="D", mode="dorian", notes=64,
                                seconds=None)
    response = user_client.post(f"/compositions/{piece.public_id}/again/")
    again = Composition.objects.exclude(id=piece.id).get()
    assert response["Location"] == f"/compositions/{again.public_id}/"
    assert {k: current(again).params[k] for k in ("key", "mode", "notes", "seed")} == {
        "key": "D", "mode": "dorian", "notes": 64, "seed": None}
    form = user_client.get(f"/compositions/new/?from={piece.public_id}").content.decode()
    assert '<option value="dorian" selected>' in form and 'value="64"' in form


# -- the REST API v1 ----------------------------------------------------------------------------------


def test_register_then_sign_in_then_revoke_the_token(db: None) -> None:
    api = APIClient()
    created = api.post("/api/v1/auth/register/", {"username": "newbie", "password": PASSWORD}, format="json")
    assert created.status_code == 201 and created.json()["token"]
    refused = api.post("/api/v1/auth/register/", {"username": "newbie", "password": "123"}, format="json")
    assert refused.status_code == 400 and {"username", "password"} <= set(refused.json()["errors"])
    api.credentials(HTTP_AUTHORIZATION=f"Token {created.json()['token']}")
    assert api.get("/api/v1/compositions/").status_code == 200
    assert api.delete("/api/v1/auth/token/").status_code == 204
    assert api.get("/api/v1/compositions/").status_code == 401


def test_styles_give_an_app_every_control_from_the_one_definition(db: None) -> None:
    data = APIClient().get("/api/v1/styles/").json()
    assert data["styles"][0]["name"] == "alpha" and data["styles"][0]["default_tempo"] > 0
    assert data["controls"]["seconds"]["minimum"] == 5 and data["controls"]["key"]["choices"][0]["value"] == "any"
    # The metre's default is the style's own: each style says which metres it draws from.
    assert data["controls"]["time_signature"]["default"] is None and data["controls"]["time_signature"]["nullable"]
    assert data["styles"][0]["default_time_signature"] in data["styles"][0]["time_signatures"]


def test_the_api_lists_mine_favourites_and_public_with_cursor_pagination(
        user: User, other_user: User, composition_factory: Callable[..., Composition]) -> None:
    for i in range(25):
        composition_factory(user, title=f"mine {i}", is_favourite=i < 3)
    shared = composition_factory(other_user, status=CompositionVersion.Status.DONE, title="theirs")
    composition_share(composition=shared, visibility="public")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    first = api.get("/api/v1/compositions/").json()
    assert len(first["results"]) == 20 and first["next"]
    second = api.get(first["next"]).json()
    assert len(second["results"]) == 5 and not second["next"]
    assert len(api.get("/api/v1/compositions/?scope=favourites").json()["results"]) == 3
    public = APIClient().get("/api/v1/compositions/?scope=public").json()["results"]
    assert [(p["title"], p["mine"]) for p in public] == [("theirs", False)]
    assert api.get("/api/v1/compositions/?scope=everything").status_code == 400


def test_the_api_renames_favourites_shares_and_deletes(user: User, composition_factory: Callable) -> None:
    piece = composition_factory(user, status=CompositionVersion.Status.DONE)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    url = f"/api/v1/compositions/{piece.public_id}/"
    assert api.patch(url, {"title": "Mine", "is_favourite": True}, format="json").status_code == 200
    shared = api.post(url + "share/", {"visibility": "unlisted"}, format="json").json()
    assert shared["visibility"] == "unlisted" and shared["share_url"].startswith("http://testserver/s/")
    bad = api.post(url + "share/", {"visibility": "everyone"}, format="json")
    assert bad.status_code == 400 and "visibility" in bad.json()["errors"]
    assert api.delete(url).status_code == 204
    assert api.get(url).status_code == 404


def test_the_unversioned_paths_are_aliases_and_the_schema_documents_v1(user: User) -> None:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    assert api.get("/api/compositions/").status_code == api.get("/api/v1/compositions/").status_code == 200
    schema = APIClient().get("/api/schema/?format=json").json()
    assert all(path.startswith("/api/v1/") for path in schema["paths"])
    create = schema["paths"]["/api/v1/compositions/"]["post"]["responses"]
    assert {"202", "400", "401", "429", "503"} <= set(create)
    request = schema["components"]["schemas"]["CompositionRequest"]["properties"]
    assert request["style"]["enum"] == ["alpha", "beta"] and "3/4" in request["time_signature"]["enum"]
    assert schema["components"]["schemas"]["ModeEnum"]["enum"] == ["major", "minor", "dorian", "mixolydian"]
    assert APIClient().get("/api/docs/").status_code == 200


def test_a_primer_uploaded_once_is_continued_by_id_and_only_by_its_owner(
        user: User, other_user: User, style: str, queued_tasks: list) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    sent = api.post("/api/v1/primers/", {"file": SimpleUploadedFile("t.mid", midi_bytes([60, 62, 64, 65]))},
                    format="multipart")
    assert sent.status_code == 201 and sent.json()["notes"] == 4
    refused = api.post("/api/v1/primers/", {"file": SimpleUploadedFile("t.mid", b"<html>")}, format="multipart")
    assert refused.status_code == 400 and "not a MIDI file" in refused.json()["errors"]["file"][0]
    made = api.post("/api/v1/compositions/", {"style": style, "primer_id": sent.json()["id"]}, format="json")
    assert made.status_code == 202 and current(Composition.objects.get()).primer_file
    thief = APIClient()
    thief.credentials(HTTP_AUTHORIZATION=f"Token {api_token_create(user=other_user).key}")
    stolen = thief.post("/api/v1/compositions/", {"style": style, "primer_id": sent.json()["id"]}, format="json")
    assert stolen.status_code == 400 and "primer_id" in stolen.json()["errors"]


@pytest.mark.parametrize("token", ["\x00", "abc\x00def"])
def test_a_share_token_with_a_nul_is_no_such_piece(pieces: dict[str, Composition], client: Client, token: str) -> None:
    piece = pieces["unlisted"]
    assert client.get(f"/api/v1/compositions/{piece.public_id}/versions/", {"share_token": token}).status_code == 404
    assert client.get(f"/api/v1/compositions/{piece.public_id}/audio.mp3", {"share_token": token}).status_code == 404

