"""The LLM path through the real Serve application, against a local OpenAI-compatible stand-in.

A second application (``rca-llm``) with the LLM configured runs on the session's Ray cluster;
it is called through its ingress handle, the same entry the CLI uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from ray import serve

from pipelines.app import build_app
from pipelines.schemas import Analysis
from pipelines.settings import Settings
from pipelines.simulate import SCENARIOS, simulate
from tests.support.openai_standin import OpenAIStandin, answer, quoting_model, respond_with, slow

pytestmark = pytest.mark.serve


@pytest.fixture(scope="module")
def llm() -> Iterator[OpenAIStandin]:
    with OpenAIStandin(default=respond_with(quoting_model)) as standin:
        yield standin


@pytest.fixture(scope="module")
def llm_app(serve_app: str, llm: OpenAIStandin, database_url: str) -> Iterator[Any]:
    settings = Settings(
        database_url=database_url,
        openai_base_url=llm.base_url,
        openai_api_key="test-key",
        openai_model="standin-model",
        llm_timeout_seconds=2,
        llm_max_attempts=2,
        summarizer_replicas=1,
    )
    handle = serve.run(build_app(settings), name="rca-llm", route_prefix="/llm-test")
    yield handle
    serve.delete("rca-llm")


def _analyze(handle: Any, scenario: str) -> Analysis:
    return Analysis.model_validate(handle.analyze.remote(simulate(scenario, seed=3).request_body()).result())


def test_grounded_llm_answer_is_used_with_its_usage(llm_app: Any, llm: OpenAIStandin) -> None:
    llm.script[:] = []
    analysis = _analyze(llm_app, "dns_failure")
    assert analysis.reasoner == "llm:standin-model" and not analysis.degraded, analysis.degraded_reasons
    assert analysis.classification.category.value == SCENARIOS["dns_failure"].category.value
    assert analysis.llm_usage is not None and analysis.llm_usage.prompt_tokens > 0
    sent = llm.bodies()[-1]
    system = next(m["content"] for m in sent["messages"] if m["role"] == "system")
    assert "getaddrinfo" not in system, "log text never goes into the system prompt"


def test_malformed_completion_falls_back_to_the_evidence_reasoner_marked_degraded(llm_app: Any, llm: OpenAIStandin) -> None:
    llm.script[:] = [answer("this is not JSON"), answer('{"category": "weather"}')]
    analysis = _analyze(llm_app, "memory_leak")
    assert analysis.reasoner == "evidence" and analysis.degraded
    assert any("llm" in r.lower() for r in analysis.degraded_reasons), analysis.degraded_reasons
    assert analysis.classification.category.value == "application"


def test_timeout_falls_back_marked_degraded(llm_app: Any, llm: OpenAIStandin) -> None:
    llm.script[:] = [slow(5.0), slow(5.0)]
    analysis = _analyze(llm_app, "third_party_outage")
    assert analysis.reasoner == "evidence" and analysis.degraded
    assert analysis.classification.category.value == "external"
