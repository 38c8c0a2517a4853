"""Property-based API testing with schemathesis against the running app's own OpenAPI schema.

Every operation, authenticated as admin, gets generated examples (valid and invalid bodies,
parameters and paths): no answer may be a 5xx, and every answer must match the schema
(documented status, content type, headers, body). ``RCA_SCHEMATHESIS_EXAMPLES`` sets the
examples per operation and mode (default 100 valid + 100 invalid). Each example is its own client
(X-Forwarded-For from a documentation range) so the session's rate limit is not what is tested.
"""

from __future__ import annotations

import itertools
import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

pytestmark = pytest.mark.serve

EXAMPLES = int(os.environ.get("RCA_SCHEMATHESIS_EXAMPLES", "100"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
]
_clients = itertools.count(1)
RUN: dict[str, int] = {}  # operation -> examples sent, reported at the end of the module


@pytest.fixture(scope="session")
def api_schema(serve_app: str):
    schema = schemathesis.openapi.from_url(f"{serve_app}/openapi.json", timeout=30)
    return schema


@pytest.fixture(scope="module")
def admin_headers(auth_headers) -> dict[str, str]:
    return auth_headers("admin", subject="schemathesis", ttl_seconds=4 * 3600)


def _run_operation(operation, mode: GenerationMode, serve_app: str, admin_headers: dict[str, str]) -> int:
    """Hypothesis over one operation; returns the examples sent. Raises the first failure found."""
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
              suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        nonlocal sent
        n = next(_clients)
        headers = {**admin_headers, "X-Forwarded-For": f"198.18.{n // 250 % 250}.{n % 250 + 1}"}
        sent += 1
        case.call_and_validate(base_url=serve_app, headers=headers, checks=CHECKS, timeout=120)

    run()
    return sent


# pytest 9 broke schemathesis's own parametrization (schemathesis.pytest.from_fixture sets the
# removed Node._nodeid), so the operations are walked here, each with its own hypothesis run.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_schema_and_never_answers_5xx(
    api_schema, mode: GenerationMode, serve_app: str, admin_headers: dict[str, str]
) -> None:
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        label = f"{operation.method.upper()} {operation.path}"
        try:
            sent = _run_operation(operation, mode, serve_app, admin_headers)
        except Unsatisfiable:  # nothing invalid can be sent to an operation without inputs (GET /health)
            sent = 0
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{label} ({mode.value}): {str(exc)[:2000]}")
            sent = 0
        RUN[label] = RUN.get(label, 0) + sent
    assert not failures, "\n\n".join(failures)


def test_zz_report_examples_run() -> None:
    """Not a check of the API: prints what the run above covered (examples per operation)."""
    if not RUN:
        pytest.skip("the schemathesis test did not run in this session")
    total = sum(RUN.values())
    print(f"\nschemathesis: {total} examples over {len(RUN)} operations: {dict(sorted(RUN.items()))}")
    assert len(RUN) >= 9 and sum(n > 0 for n in RUN.values()) >= 9
