"""The LLM reasoner: asks any OpenAI-compatible endpoint to confirm or correct the evidence reasoner.

The evidence reasoner always runs first; its verdict is both the candidate list shown to the
model and the answer when the model cannot give a usable one. The call is guarded on every
side, because an LLM outage must never lose or delay an analysis for long:

- the prompt is bounded by a token budget and redacted (``prompt.py``);
- the answer is a JSON object checked against :class:`LLMAnswer` (sent as a strict JSON
  schema in ``response_format``); an invalid answer is retried once with the validation
  error, then the evidence verdict is returned, marked degraded with the reason;
- timeouts, connection errors, HTTP 429 and 5xx are retried with exponential backoff and
  jitter for at most ``llm_max_attempts`` attempts, waiting what ``Retry-After`` asks when
  the server says (up to :data:`MAX_RETRY_AFTER_SECONDS`); other 4xx fail at once;
- concurrent calls per replica are limited by an ``asyncio.Semaphore``;
- hypotheses whose evidence is not in the prompt, or that name a service the input never
  mentions, are dropped; confidences blend the model's with the evidence reasoner's support.

:meth:`LLMReasoner.reason` never raises.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field, replace
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipelines.metrics import count_llm_request
from pipelines.reasoning.base import Evidence, Reasoner, Verdict
from pipelines.reasoning.prompt import (
    Prompt,
    PromptOverBudget,
    build_prompt,
    estimate_tokens,
    is_grounded,
)
from pipelines.schemas import (
    Category,
    Classification,
    Hypothesis,
    LLMUsage,
    RemediationStep,
    RiskLevel,
    describe_validation_error,
)
from pipelines.settings import Settings
from pipelines.tls import describe_tls_error, http_verify

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_SECONDS = 60.0  # a server asking for longer is treated as down: the analysis goes on
MAX_BACKOFF_SECONDS = 30.0
MAX_COMPLETION_TOKENS = 1500
MODEL_WEIGHT = 0.5  # share of the model's own confidence in a blended confidence
UNSUPPORTED_SUPPORT_FACTOR = 0.5  # support of a cause the evidence reasoner did not consider
MAX_HYPOTHESES = 3
MAX_EVIDENCE_CHARS = 500
MIN_HYPOTHESES = 2
DEFAULT_BASE_URL = "https://api.openai.com/v1"


# ---------------------------------------------------------------- the answer the model must give


class LLMHypothesis(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cause: str = Field(min_length=1, max_length=500, description="the root cause, one sentence")
    confidence: float = Field(ge=0.0, le=1.0, description="0 to 1")
    evidence: list[str] = Field(min_length=1, max_length=8, description="verbatim excerpts of the INCIDENT DATA")
    category: Category
    service: str | None = Field(description="the service that causes the incident, as named in the data")
    fault_type: str | None = Field(description="e.g. cpu_contention, memory_leak, network_delay, code_exception")


class LLMStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(min_length=1, max_length=500)
    command: str | None = Field(description="a shell command, or null")
    expected_outcome: str = Field(min_length=1, max_length=500)
    risk_level: RiskLevel


class LLMAnswer(BaseModel):
    """The JSON object the model answers with (a strict JSON schema of it is sent)."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    category_confidence: float = Field(ge=0.0, le=1.0, description="0 to 1")
    hypotheses: list[LLMHypothesis] = Field(min_length=1, max_length=MAX_HYPOTHESES, description="1 to 3, best first")
    remediation: list[LLMStep] = Field(min_length=1, max_length=6, description="1 to 6 ordered steps")


# Keywords many OpenAI-compatible servers reject in strict mode; the ranges are checked by
# pydantic on our side and stated in the descriptions for the model.
_UNSUPPORTED_KEYWORDS = {"default", "minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems", "title"}


def strict_json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema in the form OpenAI's strict structured outputs accept:
    every object closed (``additionalProperties: false``) with all properties required."""

    def fix(node: Any) -> Any:
        if isinstance(node, list):
            return [fix(v) for v in node]
        if not isinstance(node, dict):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in ("properties", "$defs"):  # names of properties and definitions, not keywords
                out[key] = {name: fix(sub) for name, sub in value.items()}
            elif key not in _UNSUPPORTED_KEYWORDS:
                out[key] = fix(value)
        if out.get("type") == "object" and "properties" in out:
            out["additionalProperties"] = False
            out["required"] = list(out["properties"])
        return out

    return fix(model.model_json_schema())


RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "root_cause_analysis", "strict": True, "schema": strict_json_schema(LLMAnswer)},
}
RESPONSE_FORMAT_TOKENS = estimate_tokens(json.dumps(RESPONSE_FORMAT))


# ---------------------------------------------------------------- errors of one call


class LLMCallFailed(Exception):
    """The endpoint gave no answer after the allowed attempts; ``outcome`` names why for metrics."""

    def __init__(self, message: str, outcome: str) -> None:
        super().__init__(message)
        self.outcome = outcome


@dataclass
class _Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 0
    answered: bool = False

    def add(self, usage: Any, prompt_estimate: int) -> tuple[int, int]:
        """Add one response's usage (our estimate when the server reports none); return it."""
        self.answered = True
        prompt = getattr(usage, "prompt_tokens", None) if usage is not None else None
        completion = getattr(usage, "completion_tokens", None) if usage is not None else None
        tokens = (int(prompt) if prompt is not None else prompt_estimate, int(completion or 0))
        self.prompt_tokens += tokens[0]
        self.completion_tokens += tokens[1]
        return tokens


@dataclass
class _Checked:
    hypotheses: list[Hypothesis]
    dropped: list[str] = field(default_factory=list)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds a 429/503 asks to wait: ``retry-after-ms``, ``Retry-After`` seconds or HTTP date."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            moment = email.utils.parsedate_to_datetime(value)
            return max(moment.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


_FENCE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.DOTALL)


def parse_answer(content: str | None) -> LLMAnswer:
    """The model's message as an :class:`LLMAnswer`; raises ``ValueError`` saying what is wrong."""
    if not content or not content.strip():
        raise ValueError("the answer is empty")
    match = _FENCE.match(content)
    text = match.group(1) if match else content
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the answer is not JSON ({exc.msg} at position {exc.pos})") from None
    try:
        return LLMAnswer.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc, empty="answer", limit=8)
        raise ValueError(f"the answer does not match the schema ({problems})") from None


# ---------------------------------------------------------------- the reasoner


class LLMReasoner:
    """Root cause by an OpenAI-compatible model, checked against the evidence; never raises."""

    def __init__(self, settings: Settings, fallback: Reasoner, *, client: openai.AsyncOpenAI | None = None) -> None:
        self.settings = settings
        self.fallback = fallback
        self.model = settings.openai_model
        self.name = f"llm:{settings.openai_model}"
        self._semaphore = asyncio.Semaphore(settings.llm_max_concurrency)
        self._sleep = asyncio.sleep  # between attempts; tests replace it to see the waits
        self._client = client or openai.AsyncOpenAI(
            api_key=settings.openai_api_key or "not-needed",  # local OpenAI-compatible servers ignore it
            base_url=settings.openai_base_url or DEFAULT_BASE_URL,
            timeout=settings.llm_timeout_seconds,
            max_retries=0,  # retries are ours: counted, bounded, and honouring Retry-After
            http_client=openai.DefaultAsyncHttpxClient(verify=http_verify(settings)),  # RCA_CA_FILE
        )

    async def reason(self, evidence: Evidence) -> Verdict:
        candidates, fallback_error = await self._candidates(evidence)
        usage = _Usage()
        prompt: Prompt | None = None
        try:
            prompt = build_prompt(
                evidence,
                candidates,
                budget_tokens=self.settings.llm_input_token_budget,
                reserved_tokens=RESPONSE_FORMAT_TOKENS,
            )
            async with self._semaphore:
                answer = await self._answer(prompt, usage)
            verdict = self._verdict(answer, prompt, candidates, usage)
        except PromptOverBudget as exc:
            verdict = self._degraded(candidates, f"llm: not asked, {exc}", usage, prompt)
        except LLMCallFailed as exc:
            verdict = self._degraded(candidates, f"llm: {exc}", usage, prompt)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - whatever happens, the analysis goes on
            log.exception("LLM reasoner failed unexpectedly")
            verdict = self._degraded(candidates, f"llm: unexpected {type(exc).__name__}: {str(exc)[:200]}", usage, prompt)
            count_llm_request("error")
        if fallback_error:
            verdict.degraded_reasons.append(fallback_error)
        return verdict

    # ---------------------------------------------------------------- steps

    async def _candidates(self, evidence: Evidence) -> tuple[Verdict | None, str | None]:
        try:
            return await self.fallback.reason(evidence), None
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            log.exception("fallback reasoner %s failed", getattr(self.fallback, "name", "?"))
            return None, f"{getattr(self.fallback, 'name', 'fallback')}: failed ({type(exc).__name__}: {str(exc)[:200]})"

    async def _answer(self, prompt: Prompt, usage: _Usage) -> LLMAnswer:
        """One answer; an invalid one is retried once with the validation error."""
        messages = list(prompt.messages)
        problem = ""
        for round_ in (1, 2):
            content, finish, tokens = await self._complete(messages, prompt.input_tokens, usage)
            try:
                if finish == "length":
                    raise ValueError(f"the answer was cut at {MAX_COMPLETION_TOKENS} tokens")
                answer = parse_answer(content)
                count_llm_request("ok", *tokens)
                return answer
            except ValueError as exc:
                problem = str(exc)
                count_llm_request("invalid", *tokens)
                if round_ == 2:
                    break
                messages = messages + [
                    {"role": "assistant", "content": (content or "")[:4000]},
                    {
                        "role": "user",
                        "content": f"That answer was rejected: {problem}. "
                        "Answer again with only one JSON object that matches the schema.",
                    },
                ]
        raise LLMCallFailed(f"answer invalid twice ({problem[:300]})", "invalid")

    async def _complete(
        self, messages: list[dict[str, str]], prompt_estimate: int, usage: _Usage
    ) -> tuple[str | None, str | None, tuple[int, int]]:
        """One chat completion with transport retries: (content, finish_reason, (prompt, completion) tokens).
        Every failed attempt is counted on the metrics by outcome."""
        attempts = self.settings.llm_max_attempts
        last = ""
        for attempt in range(1, attempts + 1):
            usage.attempts += 1
            wait: float | None = None
            try:
                response = await asyncio.wait_for(
                    self._client.chat.completions.create(
                        model=self.model,
                        messages=messages,  # type: ignore[arg-type]
                        response_format=RESPONSE_FORMAT,  # type: ignore[arg-type]
                        temperature=0,
                        max_tokens=MAX_COMPLETION_TOKENS,
                    ),
                    timeout=self.settings.llm_timeout_seconds * 1.5,  # the client's timeout is per read
                )
            except (openai.APITimeoutError, asyncio.TimeoutError):
                last, outcome = f"no answer within {self.settings.llm_timeout_seconds:g} s", "timeout"
            except openai.APIConnectionError as exc:
                refused = describe_tls_error("LLM", str(self._client.base_url), exc)
                if refused:  # a certificate does not fix itself between attempts
                    count_llm_request("error")
                    raise LLMCallFailed(refused, "error") from None
                last, outcome = f"cannot connect ({str(exc)[:200]})", "error"
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status != 429 and status < 500:
                    raise LLMCallFailed(f"HTTP {status} from the endpoint ({_error_text(exc)})", "error") from None
                outcome = "rate_limited" if status == 429 else "error"
                last = f"HTTP {status} ({_error_text(exc)})"
                wait = retry_after_seconds(getattr(exc.response, "headers", None))
                if wait is not None and wait > MAX_RETRY_AFTER_SECONDS:
                    raise LLMCallFailed(f"{last}; Retry-After {wait:.0f} s is too long to wait", outcome) from None
            else:
                tokens = usage.add(getattr(response, "usage", None), prompt_estimate)
                choice = response.choices[0] if response.choices else None
                if choice is None:
                    return None, None, tokens
                return choice.message.content, choice.finish_reason, tokens
            count_llm_request(outcome)
            if attempt == attempts:
                break
            if wait is None:
                base = self.settings.llm_backoff_seconds * 2 ** (attempt - 1)
                wait = min(base, MAX_BACKOFF_SECONDS) * random.uniform(0.5, 1.0)
            log.info("LLM attempt %d/%d failed (%s); retrying in %.2f s", attempt, attempts, last, wait)
            await self._sleep(wait)
        raise LLMCallFailed(f"{last}; gave up after {attempts} attempts", "gave_up")

    # ---------------------------------------------------------------- answers

    def _usage(self, usage: _Usage) -> LLMUsage | None:
        if not usage.attempts:
            return None
        cost = None
        price_in = self.settings.llm_cost_per_1k_input_tokens
        price_out = self.settings.llm_cost_per_1k_output_tokens
        if price_in is not None and price_out is not None:
            cost = round(usage.prompt_tokens / 1000 * price_in + usage.completion_tokens / 1000 * price_out, 6)
        return LLMUsage(
            model=self.model,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            attempts=usage.attempts,
            cost_usd=cost,
        )

    def _degraded(self, candidates: Verdict | None, reason: str, usage: _Usage, prompt: Prompt | None) -> Verdict:
        """The evidence reasoner's verdict, saying why the LLM's is not used."""
        if candidates is None:
            candidates = Verdict(
                classification=Classification(category=Category.application, confidence=0.0),
                hypotheses=[],
                remediation=[],
                reasoner="none",
            )
        return replace(
            candidates,
            degraded_reasons=[*candidates.degraded_reasons, reason],
            llm_usage=self._usage(usage) if usage.answered else candidates.llm_usage,
            redactions=candidates.redactions + (prompt.redactions if prompt else 0),
        )

    def _verdict(self, answer: LLMAnswer, prompt: Prompt, candidates: Verdict | None, usage: _Usage) -> Verdict:
        checked = self._check(answer, prompt, candidates)
        reasons: list[str] = []
        hypotheses = sorted(checked.hypotheses, key=lambda h: -h.confidence)[:MAX_HYPOTHESES]
        if len(hypotheses) < MIN_HYPOTHESES and candidates is not None:
            filled = 0
            for cand in sorted(candidates.hypotheses, key=lambda h: -h.confidence):
                if len(hypotheses) >= MIN_HYPOTHESES:
                    break
                if not any(_same_cause(cand, h) for h in hypotheses):
                    hypotheses.append(cand)
                    filled += 1
            if filled:
                reasons.append(f"llm: {filled} hypothesis(es) filled in from the evidence reasoner")
        if checked.dropped:
            # Only a weaker answer is degraded: when causes had to be filled in, say which were dropped.
            note = "llm: dropped " + "; ".join(checked.dropped)[:400]
            if len(checked.hypotheses) < MIN_HYPOTHESES:
                reasons.append(note)
            else:
                log.warning("%s", note)

        suggested = [
            RemediationStep(
                step=1,
                action=s.action,
                command=s.command or None,
                expected_outcome=s.expected_outcome,
                risk_level=s.risk_level,
                source=self.name,
            )
            for s in answer.remediation
        ]
        steps = [*_team_runbook_steps(candidates, hypotheses), *suggested]
        remediation = [s.model_copy(update={"step": i}) for i, s in enumerate(steps, start=1)]
        if not remediation and candidates is not None:
            remediation = list(candidates.remediation)

        agree = candidates is not None and candidates.classification.category == answer.category
        support = candidates.classification.confidence if agree and candidates else 0.0
        classification = Classification(
            category=answer.category,
            confidence=_clip(MODEL_WEIGHT * answer.category_confidence + (1 - MODEL_WEIGHT) * support),
        )
        return Verdict(
            classification=classification,
            hypotheses=hypotheses,
            remediation=remediation,
            reasoner=self.name,
            degraded_reasons=reasons if len(hypotheses) >= MIN_HYPOTHESES else reasons + ["llm: fewer than 2 causes"],
            llm_usage=self._usage(usage),
            redactions=prompt.redactions + (candidates.redactions if candidates else 0),
        )

    def _check(self, answer: LLMAnswer, prompt: Prompt, candidates: Verdict | None) -> _Checked:
        """Keep hypotheses grounded in the prompt; blend their confidence with the evidence."""
        out = _Checked(hypotheses=[])
        for h in answer.hypotheses:
            service = (h.service or "").strip() or None
            if service and service.lower() not in prompt.services:
                out.dropped.append(f"{service!r}: a service not in the input")
                continue
            grounded = [e for e in h.evidence if is_grounded(e, prompt.corpus)]
            if not grounded:
                out.dropped.append(f"{h.cause[:80]!r}: evidence not found in the input")
                continue
            support = _support(h, service, grounded, candidates)
            out.hypotheses.append(
                Hypothesis(
                    cause=h.cause,
                    confidence=_clip(MODEL_WEIGHT * h.confidence + (1 - MODEL_WEIGHT) * support),
                    evidence=[e[:MAX_EVIDENCE_CHARS] for e in grounded],
                    category=h.category,
                    service=_canonical_service(service, candidates, prompt),
                    fault_type=h.fault_type or None,
                )
            )
        return out


def _team_runbook_steps(candidates: Verdict | None, hypotheses: list[Hypothesis]) -> list[RemediationStep]:
    """The team's own runbook steps come first, as with the evidence reasoner, when the model's top
    cause is the service those runbooks were matched on (the evidence reasoner's top hypothesis)."""
    if candidates is None or not candidates.hypotheses or not hypotheses:
        return []
    if hypotheses[0].service != candidates.hypotheses[0].service:
        return []
    return [s for s in candidates.remediation if (s.source or "").startswith("runbook:")]


def _support(h: LLMHypothesis, service: str | None, grounded: list[str], candidates: Verdict | None) -> float:
    """How much the evidence reasoner backs this cause: its confidence in the same service (or,
    for a cause without a service, the same category); for a cause it did not consider, half
    the share of the cited evidence found in the input."""
    if candidates is not None:
        if service:
            same = [c.confidence for c in candidates.hypotheses if c.service and c.service.lower() == service.lower()]
        else:
            same = [c.confidence for c in candidates.hypotheses if c.category == h.category]
        if same:
            return max(same)
    return UNSUPPORTED_SUPPORT_FACTOR * len(grounded) / max(len(h.evidence), 1)


def _canonical_service(service: str | None, candidates: Verdict | None, prompt: Prompt) -> str | None:
    """The service spelled as the input spells it (the model may change its case)."""
    if not service:
        return None
    if candidates is not None:
        for c in candidates.hypotheses:
            if c.service and c.service.lower() == service.lower():
                return c.service
    return service


def _same_cause(a: Hypothesis, b: Hypothesis) -> bool:
    if a.service and b.service and a.service.lower() == b.service.lower():
        return (a.fault_type or "") == (b.fault_type or "") or not a.fault_type or not b.fault_type
    return a.cause.strip().lower() == b.cause.strip().lower()


def _clip(x: float) -> float:
    return round(min(max(float(x), 0.0), 1.0), 4)


def _error_text(exc: openai.APIStatusError) -> str:
    """The server's error message (the SDK keeps the body's ``error`` object, or the whole body)."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error")
        message = inner.get("message") if isinstance(inner, dict) else body.get("message")
        if message:
            return str(message)[:200]
    return str(exc)[:200]
