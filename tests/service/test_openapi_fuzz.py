"""Schema-driven fuzzing (schemathesis): every answer of the real server to generated valid and
invalid requests has a status, content type and body that `/openapi.json` documents, and none
is a 5xx. Kept quick: a few dozen derandomised examples per operation and mode."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]  # fmt: skip
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE
# Operations without parameters or body have no invalid input to generate.
RUNS = [("POST /detect", POSITIVE), ("POST /detect", NEGATIVE), ("GET /healthz", POSITIVE),
        ("GET /readyz", POSITIVE), ("GET /model", POSITIVE)]  # fmt: skip


@pytest.fixture(scope="module")
def live_schema(service):
    """The OpenAPI schema the running `service` publishes."""
    return schemathesis.openapi.from_url(f"{service.http_url}/openapi.json")


def operation_of(schema, label: str):
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label == label:
            return operation
    raise AssertionError(f"{label} is not in the OpenAPI schema")


@pytest.mark.parametrize(("label", "mode"), RUNS)
def test_every_answer_is_documented_in_the_openapi_schema(live_schema, service, label, mode):
    operation = operation_of(live_schema, label)
    checks = [*CHECKS, negative_data_rejection] if mode is NEGATIVE else CHECKS

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=25, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def call(case):
        case.call_and_validate(base_url=service.http_url, checks=checks, timeout=30)

    call()
