"""Our own OpenAPI schema: the operations, components and error responses it promises, and schemathesis
against it with every check (no 500, and no answer that breaks the schema), DEBUG off and on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from compositions.models import CompositionVersion
from compositions.services.accounts import api_token_create
from tests.conftest import midi_bytes

# Every operation of /api/v1/, with the status codes it documents. An error answer is one of these.
# 401: every operation that reads a token, public reads included (a wrong, expired or revoked token is
# refused even where none is needed); signing up and signing in read none. 415: every operation that
# reads a body, for one in a media type it does not take (or none).
OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("post", "/api/v1/auth/register/"): {"201", "400", "415", "429"},
    ("post", "/api/v1/auth/token/"): {"200", "400", "415", "429"},
    ("delete", "/api/v1/auth/token/"): {"204", "401"},
    ("get", "/api/v1/auth/tokens/"): {"200", "401"},
    ("delete", "/api/v1/auth/tokens/{token_id}/"): {"204", "401", "404"},
    ("delete", "/api/v1/auth/account/"): {"204", "400", "401", "415", "429"},
    ("post", "/api/v1/auth/export/"): {"202", "401", "409"},
    ("get", "/api/v1/auth/export/{public_id}/"): {"200", "401", "404"},
    ("get", "/api/v1/auth/export/{public_id}/download.zip"): {"200", "401", "404", "409", "410"},
    ("get", "/api/v1/styles/"): {"200", "401", "503"},
    ("post", "/api/v1/primers/"): {"201", "400", "401", "415", "429"},
    ("get", "/api/v1/compositions/"): {"200", "400", "401"},
    ("post", "/api/v1/compositions/"): {"202", "400", "401", "415", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/"): {"200", "401", "404"},
    ("patch", "/api/v1/compositions/{public_id}/"): {"200", "400", "401", "404", "415"},
    ("delete", "/api/v1/compositions/{public_id}/"): {"204", "401", "404"},
    ("post", "/api/v1/compositions/{public_id}/cancel/"): {"200", "401", "404", "409"},
    ("post", "/api/v1/compositions/{public_id}/retry/"): {"202", "401", "404", "409", "429"},
    ("post", "/api/v1/compositions/{public_id}/share/"): {"200", "400", "401", "404", "415"},
    ("post", "/api/v1/compositions/{public_id}/regenerate/"): {
        "202", "400", "401", "404", "409", "415", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/versions/"): {"200", "401", "404"},
    ("post", "/api/v1/compositions/{public_id}/versions/"): {
        "202", "400", "401", "404", "409", "415", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/versions/{number}/"): {"200", "401", "404"},
    ("delete", "/api/v1/compositions/{public_id}/versions/{number}/"): {"204", "401", "404", "409"},
    ("post", "/api/v1/compositions/{public_id}/versions/{number}/current/"): {"200", "401", "404", "409"},
    ("get", "/api/v1/compositions/{public_id}/audio.mp3"): {"200", "401", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.mid"): {"200", "401", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.svg"): {"200", "401", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.musicxml"): {"200", "401", "404", "409", "410"},
}
# Reads that need no login: they declare optional security ({}), which schemathesis's `ignored_auth` honours.
PUBLIC_READS = {("get", "/api/v1/styles/"), ("get", "/api/v1/compositions/")} | {
    ("get", "/api/v1/compositions/{public_id}/" + tail)
    for tail in ("", "versions/", "versions/{number}/", "audio.mp3", "score.mid", "score.svg", "score.musicxml")
}
# Components an app builds on: the request and its controls, a piece as listed, detailed and polled.
COMPONENTS = {
    "Error", "CompositionRequest", "CompositionSettings", "CompositionStatus", "CompositionDetail",
    "CompositionListItem", "CompositionPage", "Created", "Form", "Phrase", "Primer", "TokenInput", "TokenOutput",
    "ApiToken", "RegisterInput", "ShareInput", "ShareOutput", "ModeEnum", "KeyEnum", "DynamicsEnum", "VisibilityEnum",
    "Version", "VersionRequest", "RegenerateRequest", "ConstraintCheck", "PrimerUpload",
}


@pytest.fixture(params=[False, True], ids=["debug-off", "debug-on"])
def debug(request: pytest.FixtureRequest, settings: Any) -> bool:
    """The API answers alike with DEBUG off and on: Django's HTML debug pages must not reach /api/."""
    settings.DEBUG = request.param
    return bool(request.param)


@pytest.fixture
def schema_json(client: Any, db: None) -> dict[str, Any]:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return dict(response.json())


def test_the_schema_has_every_operation_with_the_error_responses_we_promise(schema_json: dict[str, Any]) -> None:
    operations = {(method, path): op for path, ops in schema_json["paths"].items() for method, op in ops.items()}
    assert {key: set(op["responses"]) for key, op in operations.items()} == OPERATIONS
    assert len({op["operationId"] for op in operations.values()}) == len(operations)
    for (method, path), op in operations.items():
        for code, response in op["responses"].items():
            if int(code) >= 400:  # every error in the one shape
                assert response["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}, (
                    method, path, code)


def test_the_schema_has_the_components_and_the_one_error_shape(schema_json: dict[str, Any]) -> None:
    components = schema_json["components"]["schemas"]
    assert COMPONENTS <= set(components)
    error = components["Error"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"
    assert error["properties"]["errors"]["additionalProperties"]["items"]["type"] == "string"
    request = components["CompositionRequest"]
    assert request["required"] == ["style"] and {"seconds", "notes", "key", "form", "primer_id"} <= set(
        request["properties"])
    assert set(components["CompositionStatus"]["required"]) == {
        "id", "status", "progress", "message", "error", "mp3_url", "midi_url"}
    assert {"number", "kind", "change", "current", "mp3_url", "midi_url"} <= set(components["Version"]["required"])
    assert components["CompositionDetail"]["properties"]["version"]["type"] == "integer"
    # What was met, on the piece and on each version; the bars to regenerate; harmonise an upload or a version.
    check = {"$ref": "#/components/schemas/ConstraintCheck"}
    for name in ("CompositionDetail", "Version"):
        assert components[name]["properties"]["constraints"]["items"] == check
        score = components[name]["properties"]["score"]
        assert score.get("$ref", score.get("allOf", [{}])[0].get("$ref")) == "#/components/schemas/Score"
    assert set(components["Score"]["required"]) == {"state", "reason", "svg_url", "musicxml_url", "bar_times"}
    assert set(components["ConstraintCheck"]["required"]) == {"control", "asked", "did", "met"}
    bars = components["RegenerateRequest"]["properties"]["bars"]
    assert (bars["minItems"], bars["maxItems"], bars["items"]["type"]) == (2, 2, "integer")
    assert components["RegenerateRequest"]["required"] == ["bars"]
    assert components["CompositionRequest"]["properties"]["harmonise"]["type"] == "boolean"
    assert set(components["VersionRequestKindEnum"]["enum"]) == {"continue", "harmonise"}
    files = schema_json["paths"]["/api/v1/compositions/{public_id}/audio.mp3"]["get"]["parameters"]
    assert {parameter["name"] for parameter in files} == {"public_id", "share_token", "version"}

def test_public_reads_and_only_they_declare_optional_security(schema_json: dict[str, Any]) -> None:
    optional = {(method, path) for path, ops in schema_json["paths"].items() for method, op in ops.items()
                if {} in op.get("security", [])}
    # Signing up takes no token at all: its security is only {}.
    assert optional == PUBLIC_READS | {("post", "/api/v1/auth/register/")}


def test_the_request_bodies_require_what_the_views_require(schema_json: dict[str, Any]) -> None:
    components = schema_json["components"]["schemas"]
    for name in ("RegisterInput", "TokenInput"):
        assert set(components[name]["required"]) == {"username", "password"}
        assert components[name]["properties"]["username"]["minLength"] == 1
    upload = schema_json["paths"]["/api/v1/primers/"]["post"]["requestBody"]
    assert upload["required"] and list(upload["content"]) == ["multipart/form-data"]
    multipart = upload["content"]["multipart/form-data"]
    assert multipart["schema"] == {"$ref": "#/components/schemas/PrimerUpload"}
    assert multipart["encoding"] == {"file": {"contentType": "audio/midi"}}
    assert components["PrimerUpload"]["required"] == ["file"]
    assert components["PrimerUpload"]["properties"]["file"]["format"] == "binary"
    compose = schema_json["paths"]["/api/v1/compositions/"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert compose["encoding"] == {"primer": {"contentType": "audio/midi"}}


def test_the_list_filters_are_enums_where_the_server_knows_every_value(schema_json: dict[str, Any]) -> None:
    parameters = {p["name"]: p["schema"] for p in schema_json["paths"]["/api/v1/compositions/"]["get"]["parameters"]}
    assert set(parameters) == {"scope", "style", "status", "q"}
    assert set(parameters["scope"]["enum"]) == {"mine", "public", "favourites"}
    assert set(parameters["status"]["enum"]) == set(CompositionVersion.Status.values)


@pytest.mark.parametrize("query, field", [
    ("status=AAA", "status"), ("status=", "status"), ("scope=everything", "scope"), ("scope=", "scope"),
    ("scope=public&status=AAA", "status"), ("q=a%00b", "q"), ("style=%00", "style"),
])
def test_an_unknown_list_filter_value_is_a_400_that_names_it(user: User, query: str, field: str) -> None:
    response = APIClient().get(f"/api/v1/compositions/?{query}",
                               HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    assert response.status_code == 400, response.content
    assert set(response.json()) == {"detail", "errors"} and list(response.json()["errors"]) == [field]


def test_the_known_list_filter_values_answer_200(user: User) -> None:
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    for status in CompositionVersion.Status.values:
        assert api.get(f"/api/v1/compositions/?status={status}&scope=favourites&q=&style=").status_code == 200
    assert APIClient().get("/api/v1/compositions/?scope=public").status_code == 200


@pytest.mark.parametrize("method, path", [
    ("get", "/api/v1/compositions/null,null/"), ("get", "/api/v1/compositions/null,null/audio.mp3"),
    ("post", "/api/v1/compositions/null,null/share/"), ("delete", "/api/v1/nowhere"), ("get", "/api/nowhere/"),
    ("get", "/api/v1/compositions"),  # no slash appended under /api/: a redirect would lose a POST's body
])
def test_an_unmatched_api_path_is_a_json_404(client: Client, db: None, debug: bool, method: str, path: str) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and response.json() == {"detail": "Not found."}


def test_a_body_in_a_media_type_the_operation_does_not_take_is_a_415(user: User) -> None:
    api = APIClient(HTTP_AUTHORIZATION=f"Token {api_token_create(user=user).key}")
    response = api.post("/api/v1/primers/", {"file": "not multipart"}, format="json")
    assert response.status_code == 415 and set(response.json()) == {"detail"}


def test_an_unmatched_page_is_still_the_sites_html_404(client: Client, db: None) -> None:
    response = client.get("/nowhere/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")


# `SCHEMATHESIS_EXAMPLES=25 make test PYTEST_ARGS=tests/compositions/test_api_schema.py` searches longer.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))
# Where a request the schema allows is still refused with 400 for what no OpenAPI schema can say: whether
# a password is the account's (signing in; deleting the account, whose password goes in a DELETE body,
# which OpenAPI 3.0 cannot describe), whether a user name is free and a password strong enough (Django's
# validators), whether a primer_id is one of yours and whether a piece's controls fit together (a pitch
# range, a length the model can write, harmonise without a melody). Schemathesis makes the same allowance
# itself for the token URL of an OAuth scheme. Anywhere else, a 400 for a request the schema allows is a
# bug in the schema.
REFUSED_FOR_WHAT_NO_SCHEMA_SAYS = [
    "POST /api/v1/auth/register/", "POST /api/v1/auth/token/", "DELETE /api/v1/auth/account/",
    "POST /api/v1/compositions/",
]
CONFIG = {"operations": [{
    "include-name": REFUSED_FOR_WHAT_NO_SCHEMA_SAYS,
    "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "3xx", "400", "401", "403", "404", "409", "429", "5xx"]}},
}]}
# The uploads are MIDI files (`encoding` says audio/midi): without this, schemathesis would send random bytes.
schemathesis.openapi.media_type("audio/midi", st.sampled_from([midi_bytes([60, 62, 64, 65, 67]),
                                                               midi_bytes([48, 55, 60, 64, 67, 72])]))


@pytest.fixture
def api_schema(db: None, debug: bool) -> Iterator[Any]:
    from musicgen.wsgi import application

    # Calling the WSGI app directly sends request_finished, which closes the database connection
    # (and with it the test's transaction on PostgreSQL); Django's test client holds it the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", application,
                                             config=schemathesis.Config.from_dict(CONFIG))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_its_schema_says(case: Any, user: User, other_user: User,
                                                    queued_tasks: list) -> None:
    # Every check, `ignored_auth` included: public reads declare optional security ({}), which it honours.
    # A fresh token for each call, since one call may revoke it (DELETE auth/token/). It is the token of
    # this test's own user, made for this test and rolled back with it: the only account that deleting
    # "the account" (DELETE auth/account/) or revoking tokens could ever reach.
    issued = api_token_create(user=user)
    assert issued.token.user_id == user.pk
    case.call_and_validate(headers={"Authorization": f"Token {issued.key}"})
    assert User.objects.filter(pk=other_user.pk).exists()
