"""The served OpenAPI schema, fuzzed: no input makes the gateway fail, and answers match it."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import content_type_conformance
from schemathesis.schemas import BaseSchema
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)

from tests.gateway.conftest import GatewayProcess
from tests.stack import BIG_MODEL

pytestmark = [pytest.mark.slow, pytest.mark.long]

UNBOUNDED = "/sessions/{session_id}/events"
"""Without a turn id this stream never ends by design; the gateway tests cover it."""
CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
"""Besides "no 500": a 502 from a failing provider is a documented answer, not a bug."""


@pytest.fixture(scope="module")
def served(gateway: GatewayProcess) -> dict[str, Any]:
    """The served schema, with the documented model swapped for one the fake provider serves."""
    raw: dict[str, Any] = httpx.get(f"{gateway.url}/openapi.json").json()
    for component in ("OpenAIChatRequest", "MessagesRequest"):
        for example in raw["components"]["schemas"][component]["examples"]:
            example["model"] = BIG_MODEL
    return raw


def call(case: Case, gateway: GatewayProcess) -> int:
    response = case.call(base_url=gateway.url, timeout=60)
    assert response.status_code != 500, case.as_curl_command()
    case.validate_response(response, checks=CHECKS)
    return response.status_code


def test_no_server_errors_and_answers_match_the_schema(
    gateway: GatewayProcess, served: dict[str, Any]
) -> None:
    schema: BaseSchema = schemathesis.openapi.from_dict(served).exclude(path=UNBOUNDED)
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=12,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: Case) -> None:
            call(case, gateway)

        fuzz()


@pytest.mark.parametrize("path", ["/chat/completions", "/v1/chat/completions", "/v1/messages"])
def test_documented_examples_are_served_as_documented(
    gateway: GatewayProcess, served: dict[str, Any], path: str
) -> None:
    """Random bodies rarely get past validation; the schema's own examples run whole turns."""
    operation = schemathesis.openapi.from_dict(served)[path]["POST"]
    body = operation.definition.raw["requestBody"]["content"]["application/json"]["schema"]
    component = body["$ref"].rsplit("/", 1)[-1]
    examples = served["components"]["schemas"][component]["examples"]
    assert examples
    for example in examples:
        assert call(operation.Case(body=example, media_type="application/json"), gateway) == 200
