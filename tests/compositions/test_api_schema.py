"""schemathesis against our own OpenAPI schema: no 500, and no answer that breaks the schema."""

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

from compositions.auth import api_token_for

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
    response = case.call_wsgi(headers={"Authorization": f"Token {api_token_for(user).key}"})
    # Every check but `ignored_auth`: reading public pieces, the styles and the schema needs no token by
    # design (declared as optional security, `{}`), which that check cannot tell from a forgotten one.
    case.validate_response(response, excluded_checks=(ignored_auth,))
