"""HTML pages. Thin: validate with a form, call a service or a selector, render."""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth import login, logout
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from compositions import selectors, services
from compositions.downloads import FileKind, composition_file_response
from compositions.errors import ComposingUnavailable, NotAllowed, QuotaExceeded, RequestInvalid
from compositions.forms import CompositionForm, ThrottledAuthenticationForm


def home(request: HttpRequest) -> HttpResponse:
    recent = selectors.composition_list_for_user(user=request.user)[:6] if request.user.is_authenticated else []
    return render(request, "compositions/home.html", {"recent": recent})


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
    services.user_logout_everywhere(user=request.user)
    logout(request)
    messages.success(request, "You are signed out on every device, and your API token no longer works.")
    return redirect("login")


@login_required
@require_GET
def composition_list(request: HttpRequest) -> HttpResponse:
    compositions = selectors.composition_list_for_user(user=request.user)
    return render(request, "compositions/list.html", {"compositions": compositions})


@login_required
@require_http_methods(["GET", "POST"])
def composition_new(request: HttpRequest) -> HttpResponse:
    form = CompositionForm(request.POST or None, request.FILES or None)
    if request.method == "GET":
        return render(request, "compositions/new.html", {"form": form})
    try:
        compositions = services.composition_request(
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


@login_required
@require_GET
def composition_detail(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    context = {
        "composition": composition,
        "batch": selectors.composition_batch(composition=composition),
        "status": selectors.composition_status(composition=composition),
        "stalled": selectors.composition_is_stalled(composition=composition),
        "settings_table": selectors.composition_settings_table(composition=composition),
    }
    return render(request, "compositions/detail.html", context)


@login_required
@require_GET
def composition_status(request: HttpRequest, public_id: uuid.UUID) -> JsonResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    return JsonResponse(selectors.composition_status(composition=composition))


@login_required
@require_POST
def composition_retry(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    try:
        services.composition_retry(composition=composition)
    except (NotAllowed, QuotaExceeded) as exc:
        messages.error(request, str(exc))
    return redirect("compositions:detail", public_id=composition.public_id)


@login_required
@require_POST
def composition_cancel(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    try:
        services.composition_cancel(composition=composition)
    except NotAllowed as exc:
        messages.error(request, str(exc))
    return redirect("compositions:detail", public_id=composition.public_id)


@login_required
@require_POST
def composition_delete(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    services.composition_delete(composition=composition)
    messages.success(request, "The piece and its files were deleted.")
    return redirect("compositions:list")


@login_required
@require_GET
def composition_file(request: HttpRequest, public_id: uuid.UUID, kind: FileKind) -> FileResponse:
    composition = selectors.composition_get_for_user(user=request.user, public_id=public_id)
    # ?download=1 saves the file; without it the browser plays it inline (<audio src>).
    return composition_file_response(
        composition=composition, kind=kind, as_attachment=request.GET.get("download") == "1"
    )
