"""HTML pages. Thin: validate with a form, call a service or a selector, render."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.paginator import Paginator
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.csrf import ensure_csrf_cookie
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compositions import selectors
from compositions.apis.routing import api_not_found
from compositions.downloads import FileKind, composition_file_response
from compositions.errors import ComposingUnavailable, NotAllowed, QuotaExceeded, RequestInvalid
from compositions.forms import CompositionForm, ThrottledAuthenticationForm
from compositions.models import Composition, CompositionVersion
from compositions.services import accounts, composing, sharing, versions


# Pages with play buttons give signed-out listeners the CSRF cookie the play counter's POST needs.
@ensure_csrf_cookie
def home(request: HttpRequest) -> HttpResponse:
    recent = selectors.composition_list_for_user(user=request.user)[:6] if request.user.is_authenticated else []
    # A visitor hears what the site makes before signing up.
    public = selectors.composition_public_list(order="popular")[:3]
    return render(request, "compositions/home.html", {"recent": recent, "public": public})


PAGE_SIZE = 24


@require_GET
@ensure_csrf_cookie
def gallery(request: HttpRequest) -> HttpResponse:
    order = "popular" if request.GET.get("order") == "popular" else "newest"
    page = Paginator(selectors.composition_public_list(order=order), PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "compositions/gallery.html", {"page": page, "order": order})


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        messages.success(request, f"Welcome, {user.username}! Compose your first piece.")
        return redirect("compositions:new")
    return render(request, "registration/signup.html", {"form": form})


class LoginView(auth_views.LoginView):
    """Django's login page with the throttle's own message when there were too many failures."""

    form_class = ThrottledAuthenticationForm


@login_required
@require_POST
def logout_everywhere(request: HttpRequest) -> HttpResponse:
    accounts.user_logout_everywhere(user=request.user)
    logout(request)
    messages.success(request, "You are signed out on every device, and your API tokens no longer work.")
    return redirect("login")


@login_required
@require_GET
def composition_list(request: HttpRequest) -> HttpResponse:
    filters = {
        "style": request.GET.get("style", ""), "status": request.GET.get("status", ""),
        "query": request.GET.get("q", "").strip(), "favourites": request.GET.get("favourites") == "1",
    }
    pieces = selectors.composition_list_for_user(user=request.user, **filters)
    page = Paginator(pieces, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page, "compositions": page.object_list, "filters": filters,
        "styles": sorted(set(selectors.composition_list_for_user(user=request.user).values_list("style", flat=True))),
        "statuses": CompositionVersion.Status.choices,
        "query_string": _without_page(request),
    }
    return render(request, "compositions/list.html", context)


def _without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@login_required
@require_http_methods(["GET", "POST"])
def composition_new(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        # "Edit these settings": the form filled in from one of the user's pieces.
        source = request.GET.get("from")
        initial = {}
        if source:
            piece = selectors.composition_get_for_user(user=request.user, public_id=source)
            assert piece.current_version is not None, "a piece is saved with its first version"
            initial = selectors.composition_settings(version=piece.current_version)
        form = CompositionForm(initial=initial)
        return render(request, "compositions/new.html", {"form": form})
    form = CompositionForm(request.POST, request.FILES or None)
    try:
        compositions = composing.composition_request(
            user=request.user, params=form.request_params(), primer=request.FILES.get("primer")
        )
    except RequestInvalid as exc:
        form.show_errors(exc.errors)
        return render(request, "compositions/new.html", {"form": form}, status=400)
    except ComposingUnavailable as exc:
        form.show_errors({NON_FIELD_ERRORS: [f"{exc.reason}; composing is not possible right now."]})
        return render(request, "compositions/new.html", {"form": form}, status=503)
    except QuotaExceeded as exc:
        form.show_errors({NON_FIELD_ERRORS: [exc.message]})
        response = render(request, "compositions/new.html", {"form": form}, status=429)
        response["Retry-After"] = str(exc.retry_after)
        return response
    return redirect("compositions:detail", public_id=compositions[0].public_id)


@require_GET
@ensure_csrf_cookie
def composition_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """The owner's page of a piece and its versions; anyone else sees a public piece's shared view (or 404)."""
    composition = selectors.composition_get_for_viewer(user=request.user, public_id=public_id)
    if composition.user_id != request.user.pk:
        return _shared_page(request, composition)
    return _owner_page(request, composition)


def _owner_page(request: HttpRequest, composition: Composition, *, regenerate: dict[str, Any] | None = None,
                status: int = 200) -> HttpResponse:
    """The owner's page; `regenerate` re-shows the Regenerate bars form as it was sent, with its errors."""
    version = composition.current_version
    assert version is not None, "a piece is saved with its first version"
    running = selectors.composition_version_running(composition=composition)
    context = {
        "regenerate": regenerate or {"values": {}, "errors": {}},
        "composition": composition,
        "version": version,
        # A new version being written while the current one plays.
        "running": running if running is not None and running.id != version.id else None,
        "versions": [selectors.composition_version_item(composition=composition, version=item)
                     for item in selectors.composition_version_list(composition=composition)],
        "unfinished_statuses": CompositionVersion.UNFINISHED_STATUSES,
        "retryable_statuses": (CompositionVersion.Status.FAILED, CompositionVersion.Status.CANCELLED),
        "batch": selectors.composition_batch(composition=composition),
        "stalled": selectors.version_is_stalled(version=version),
        "settings_table": selectors.composition_settings_table(version=version),
        **_listen_urls(composition),
        "share_url": request.build_absolute_uri(reverse("shared", args=[composition.share_token]))
        if composition.share_token else "",
        "visibilities": Composition.Visibility.choices,
    }
    return render(request, "compositions/detail.html", context, status=status)


def _listen_urls(composition: Composition, token: str = "") -> dict[str, Any]:
    """The file and play-count URLs of the player: by the piece's id, or by its share link's token."""
    names = {"mp3": "mp3", "midi": "midi", "svg": "score-svg", "musicxml": "musicxml"}
    if token:
        files = {kind: reverse(f"shared-{name}", args=[token]) for kind, name in names.items()}
        return {"files": files, "play_url": reverse("shared-play", args=[token])}
    files = {kind: reverse(f"compositions:{name}", args=[composition.public_id]) for kind, name in names.items()}
    return {"files": files, "play_url": reverse("compositions:play", args=[composition.public_id])}


def _shared_page(request: HttpRequest, composition: Composition, token: str = "") -> HttpResponse:
    """The current version's player, piano roll and settings, without the owner's private data (no name,
    no actions, no other versions)."""
    version = composition.current_version
    assert version is not None, "a piece is saved with its first version"
    urls = _listen_urls(composition, token)
    context = {
        "composition": composition, "version": version, **urls,
        "settings_table": selectors.composition_settings_table(version=version),
        "page_url": request.build_absolute_uri(),
        "audio_url": request.build_absolute_uri(urls["files"]["mp3"]),
    }
    return render(request, "compositions/shared.html", context)


@require_GET
@ensure_csrf_cookie
def shared(request: HttpRequest, token: str) -> HttpResponse:
    return _shared_page(request, selectors.composition_get_by_share_token(token=token), token)


def _file_response(request: HttpRequest, composition: Composition, kind: FileKind) -> FileResponse | HttpResponse:
    """A file of the piece's current version, or of `?version=n`; ?download=1 saves it, else it plays inline."""
    number = request.GET.get("version")
    version = selectors.composition_version_named(composition=composition, number=number)
    return composition_file_response(composition=composition, version=version, kind=kind,
                                     as_attachment=request.GET.get("download") == "1", pinned=bool(number))


@require_GET
def shared_file(request: HttpRequest, token: str, kind: FileKind) -> FileResponse | HttpResponse:
    return _file_response(request, selectors.composition_get_by_share_token(token=token), kind)


def _listener(request: HttpRequest) -> str:
    return f"user:{request.user.pk}" if request.user.is_authenticated else f"addr:{request.META.get('REMOTE_ADDR', '')}"


@require_POST
def shared_play(request: HttpRequest, token: str) -> JsonResponse:
    composition = selectors.composition_get_by_share_token(token=token)
    return JsonResponse({"counted": sharing.composition_play(composition=composition, listener=_listener(request))})


@require_POST
def composition_play(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    composition = selectors.composition_get_for_viewer(user=request.user, public_id=public_id)
    return JsonResponse({"counted": sharing.composition_play(composition=composition, listener=_listener(request))})


def _on_own_piece(request: HttpRequest, public_id: uuid.UUID, action: Callable[[Composition], object]) -> HttpResponse:
    """Run a service on one of the user's pieces; a refusal is shown as a message. Back to the piece."""
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    try:
        action(composition)
    except (RequestInvalid, NotAllowed, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    return redirect("compositions:detail", public_id=composition.public_id)


@login_required
@require_POST
def composition_edit(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    favourite = {"1": True, "0": False}.get(request.POST.get("favourite", ""))
    return _on_own_piece(request, public_id, lambda piece: sharing.composition_update(
        composition=piece, title=request.POST.get("title"), is_favourite=favourite))


@login_required
@require_POST
def composition_share(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _on_own_piece(request, public_id, lambda piece: sharing.composition_share(
        composition=piece, visibility=request.POST.get("visibility", ""),
        new_link=request.POST.get("new_link") == "1"))


@login_required
@require_POST
def composition_again(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Again with a new seed (a new piece), or continue or harmonise this one (a new version of it)."""
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    try:
        if request.POST.get("continue") == "1":
            versions.composition_continue(composition=composition)
            return redirect("compositions:detail", public_id=composition.public_id)
        if request.POST.get("harmonise") == "1":
            versions.composition_harmonise(composition=composition)
            return redirect("compositions:detail", public_id=composition.public_id)
        [first, *_] = composing.composition_again(composition=composition, user=request.user)
    except (RequestInvalid, ComposingUnavailable, QuotaExceeded, NotAllowed) as exc:
        messages.error(request, str(exc))
        return redirect("compositions:detail", public_id=composition.public_id)
    return redirect("compositions:detail", public_id=first.public_id)


def _bars_sent(data: Any) -> object:
    """The bars of the Regenerate bars form: first and last bar, or one text field such as "5-8"."""
    text = str(data.get("bars", "")).strip()
    if text:
        parts = text.replace("–", "-").replace(" ", "").split("-")
        values: list[object] = [int(p) if p.isdigit() else p for p in parts]
        return values if len(values) == 2 else [text]
    pair = [str(data.get("first_bar", "")).strip(), str(data.get("last_bar", "")).strip()]
    return [int(p) if p.lstrip("-").isdigit() else p for p in pair]


@login_required
@require_POST
def composition_regenerate(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """Regenerate bars first..last as a new version; bad bars or a bad seed re-show the page with the error (400)."""
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    sent = {name: request.POST.get(name, "") for name in ("first_bar", "last_bar", "seed")}
    try:
        versions.composition_regenerate(composition=composition, bars=_bars_sent(request.POST),
                                        seed=sent["seed"].strip() or None)
    except RequestInvalid as exc:
        errors = {field: " ".join(messages) for field, messages in exc.errors.items()}
        return _owner_page(request, composition, regenerate={"values": sent, "errors": errors}, status=400)
    except (NotAllowed, QuotaExceeded, ComposingUnavailable) as exc:
        messages.error(request, str(exc))
    return redirect("compositions:detail", public_id=composition.public_id)


@login_required
@require_POST
def composition_version_current(request: HttpRequest, public_id: uuid.UUID, number: int) -> HttpResponse:
    return _on_own_piece(request, public_id, lambda piece: versions.composition_version_set_current(
        version=selectors.composition_version_get(composition=piece, number=number)))


@login_required
@require_POST
def composition_version_delete(request: HttpRequest, public_id: uuid.UUID, number: int) -> HttpResponse:
    return _on_own_piece(request, public_id, lambda piece: versions.composition_version_delete(
        version=selectors.composition_version_get(composition=piece, number=number)))


@login_required
@require_GET
def composition_status(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    """The piece's status (its current version's), or with ?version=n that version's."""
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    version = selectors.composition_version_named(composition=composition, number=request.GET.get("version"))
    return JsonResponse(selectors.composition_version_status(composition=composition, version=version))


@login_required
@require_POST
def composition_retry(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _on_own_piece(request, public_id, lambda piece: composing.composition_retry(composition=piece))


@login_required
@require_POST
def composition_cancel(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    return _on_own_piece(request, public_id, lambda piece: composing.composition_cancel(composition=piece))


@login_required
@require_POST
def composition_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    composing.composition_delete(composition=composition)
    messages.success(request, "The piece and its files were deleted.")
    return redirect("compositions:list")


@require_GET
def composition_file(request: HttpRequest, public_id: uuid.UUID, kind: FileKind) -> FileResponse | HttpResponse:
    return _file_response(request, selectors.composition_get_for_viewer(user=request.user, public_id=public_id), kind)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 as JSON under /api/ (one error shape for apps), the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request)
    return render(request, "404.html", status=404)
