"""Our own OpenAPI schema: the operations, components and error responses it promises, and schemathesis
against it (no 500, and no answer that breaks the schema)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import ignored_auth

from compositions.services.accounts import api_token_create

# Every operation of /api/v1/, with the status codes it documents. An error answer is one of these.
OPERATIONS: dict[tuple[str, str], set[str]] = {
    ("post", "/api/v1/auth/register/"): {"201", "400", "429"},
    ("post", "/api/v1/auth/token/"): {"200", "400", "429"},
    ("delete", "/api/v1/auth/token/"): {"204", "401"},
    ("get", "/api/v1/auth/tokens/"): {"200", "401"},
    ("delete", "/api/v1/auth/tokens/{token_id}/"): {"204", "401", "404"},
    ("delete", "/api/v1/auth/account/"): {"204", "400", "401", "429"},
    ("get", "/api/v1/styles/"): {"200", "503"},
    ("post", "/api/v1/primers/"): {"201", "400", "401", "429"},
    ("get", "/api/v1/compositions/"): {"200", "400", "401"},
    ("post", "/api/v1/compositions/"): {"202", "400", "401", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/"): {"200", "404"},
    ("patch", "/api/v1/compositions/{public_id}/"): {"200", "400", "401", "404"},
    ("delete", "/api/v1/compositions/{public_id}/"): {"204", "401", "404"},
    ("post", "/api/v1/compositions/{public_id}/retry/"): {"202", "401", "404", "409", "429"},
    ("post", "/api/v1/compositions/{public_id}/share/"): {"200", "400", "401", "404"},
    ("post", "/api/v1/compositions/{public_id}/regenerate/"): {"202", "400", "401", "404", "409", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/versions/"): {"200", "404"},
    ("post", "/api/v1/compositions/{public_id}/versions/"): {"202", "400", "401", "404", "409", "429", "503"},
    ("get", "/api/v1/compositions/{public_id}/versions/{number}/"): {"200", "404"},
    ("delete", "/api/v1/compositions/{public_id}/versions/{number}/"): {"204", "401", "404", "409"},
    ("post", "/api/v1/compositions/{public_id}/versions/{number}/current/"): {"200", "401", "404", "409"},
    ("get", "/api/v1/compositions/{public_id}/audio.mp3"): {"200", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.mid"): {"200", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.svg"): {"200", "404", "409", "410"},
    ("get", "/api/v1/compositions/{public_id}/score.musicxml"): {"200", "404", "409", "410"},
}
# Components an app builds on: the request and its controls, a piece as listed, detailed and polled.
COMPONENTS = {
    "Error", "CompositionRequest", "CompositionSettings", "CompositionStatus", "CompositionDetail",
    "CompositionListItem", "CompositionPage", "Created", "Form", "Phrase", "Primer", "TokenInput", "TokenOutput",
    "ApiToken", "RegisterInput", "ShareInput", "ShareOutput", "ModeEnum", "KeyEnum", "DynamicsEnum", "VisibilityEnum",
    "Version", "VersionRequest", "RegenerateRequest", "ConstraintCheck",
}


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
    # Public reads declare optional security ({}), writes need a token or a session.
    assert {} in schema_json["paths"]["/api/v1/compositions/{public_id}/"]["get"]["security"]
    assert {} not in schema_json["paths"]["/api/v1/compositions/{public_id}/"]["patch"]["security"]

# `SCHEMATHESIS_EXAMPLES=200 make test PYTEST_ARGS=tests/compositions/test_api_schema.py` searches longer.
EXAMPLES = int(os.environ.get("SCHEMATHESIS_EXAMPLES", "8"))


@pytest.fixture
def api_schema(db: None) -> Iterator[Any]:
    from musicgen.wsgi import application

    # Calling the WSGI app directly sends request_finished, which closes the database connection
    # (and with it the test's transaction on PostgreSQL); Django's test client holds it the same way.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.from_wsgi("/api/schema/?format=json", application)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


schema = schemathesis.from_pytest_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[
    HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_its_schema_says(case: Any, user: User, queued_tasks: list) -> None:
    response = case.call_wsgi(headers={"Authorization": f"Token {api_token_create(user=user).key}"})
    # Every check but `ignored_auth`: reading public pieces, the styles and the schema needs no token by
    # design (declared as optional security, `{}`), which that check cannot tell from a forgotten one.
    case.validate_response(response, excluded_checks=(ignored_auth,))
