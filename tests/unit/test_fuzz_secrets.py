"""Planted secrets never leave: the whole pipeline (no Ray) with the LLM reasoner against the stand-in.

A corpus of real secret formats (AWS keys, GitHub and Slack tokens, JWTs, PEM private keys,
passwords in URLs, bearer headers, e-mail addresses, card numbers) is planted in the logs and
the alert of a simulated incident, at places hypothesis chooses. None of them may appear in
what is sent to the LLM stand-in or in the analysis (summary, evidence, hypotheses,
anomalies); the analysis counts the redactions. ``SECRETS`` is also used by the API test
(``tests/serve/test_security_input.py``).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

import jwt
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from pipelines.reasoning.evidence import EvidenceReasoner
from pipelines.reasoning.llm import LLMReasoner
from pipelines.schemas import Alert, IncidentContext, Telemetry
from pipelines.settings import Settings
from pipelines.simulate import simulate
from tests.support.local_pipeline import local_pipeline
from tests.support.openai_standin import OpenAIStandin, respond_with


@dataclass(frozen=True)
class Secret:
    kind: str
    line: str  # a log line carrying it
    value: str  # what must never be seen again


def _fake(alphabet: str, n: int, rng: random.Random) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def secret_corpus(seed: int = 8) -> list[Secret]:
    """Freshly generated values in the issuers' published formats (none is a real credential)."""
    rng = random.Random(seed)
    upper = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
    alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    aws_key = "AKIA" + _fake(upper, 16, rng)
    aws_secret = _fake(alnum + "/+", 40, rng)
    github = "ghp_" + _fake(alnum, 36, rng)
    github_pat = "github_pat_" + _fake(alnum, 22, rng) + "_" + _fake(alnum, 59, rng)
    slack = f"xoxb-{rng.randrange(10**11, 10**12)}-{rng.randrange(10**12, 10**13)}-{_fake(alnum, 24, rng)}"
    slack_hook = f"https://hooks.slack.com/services/T{_fake(upper, 8, rng)}/B{_fake(upper, 8, rng)}/{_fake(alnum, 24, rng)}"
    token = jwt.encode({"sub": "user-" + _fake(alnum, 8, rng), "role": "admin"}, _fake(alnum, 40, rng), algorithm="HS256")
    pem_body = _fake(alnum + "+/", 64, rng)
    url_password = _fake(alnum, 14, rng) + "!x"
    bearer = _fake(alnum, 32, rng)
    password = _fake(alnum, 16, rng)
    email = f"{_fake('abcdefghij', 6, rng)}.{_fake('klmnopqrst', 5, rng)}@example-corp.com"
    card = "4111 1111 1111 1111"
    aws_secret_spaced = _fake(alnum + "/+", 40, rng)  # drawn last: the values above stay as they were
    return [
        Secret("aws_key", f"S3 upload denied for access key {aws_key} (AccessDenied)", aws_key),
        Secret("aws_secret", f"loaded config aws_secret_access_key={aws_secret} region=eu-west-1", aws_secret),
        Secret("github_token", f"git clone https://github.com/shop/cfg failed with token {github}", github),
        Secret("github_pat", f"ci: using {github_pat} for the release job", github_pat),
        Secret("slack_token", f"notifier error posting with {slack}: channel_not_found", slack),
        Secret("slack_webhook", f"POST {slack_hook} returned 404", slack_hook),
        Secret("jwt", f"rejected session token {token} for /api/orders", token),
        Secret("private_key", f"bad key material -----BEGIN RSA PRIVATE KEY-----\n{pem_body}\n-----END RSA PRIVATE KEY-----",
               pem_body),
        Secret("url_password", f"connect to postgres://orders:{url_password}@orders-db:5432/orders timed out", url_password),
        Secret("bearer", f"upstream call headers Authorization: Bearer {bearer} -> 401", bearer),
        Secret("password", f"login retry for admin password={password} failed", password),
        Secret("email", f"password reset mail to {email} bounced", email),
        Secret("card_number", f"payment declined for card {card} amount 42.00", card),
        # no "=" or ":" after the key name: found by the value's shape near the name (issue 16)
        Secret("aws_secret_no_separator", f"env AWS_SECRET_ACCESS_KEY {aws_secret_spaced} exported for the s3 sync job",
               aws_secret_spaced),
    ]


SECRETS = secret_corpus()


def leaks(text: str, secrets: list[Secret]) -> list[str]:
    """Kinds whose value (or a 16-character piece of a long one) appears in ``text``."""
    found = []
    for s in secrets:
        pieces = [s.value] + ([s.value[i:i + 16] for i in range(0, len(s.value) - 16, 8)] if len(s.value) >= 24 else [])
        if any(p in text for p in pieces):
            found.append(s.kind)
    return found


def planted_logs(secrets: list[Secret], service: str, positions: list[int], base: list) -> list:
    """``base`` with every secret line (ERROR, several times) inserted at the given positions."""
    logs = list(base)
    for n, (secret, pos) in enumerate(zip(secrets, positions)):
        for repeat in range(5):
            line = f"2024-01-07T10:2{5 + repeat % 4}:{(n * 3 + repeat) % 60:02d}Z ERROR [{service}] {secret.line}"
            logs.insert(min(pos + repeat, len(logs)), line)
    return logs


def _echo_model(body: dict) -> dict:
    """A model that quotes the data it was given back as evidence (worst case for a leak)."""
    user = body["messages"][-1]["content"]
    block = user[user.index(">>>\n") + 4: user.rindex("\n<<<END")]
    strings = [s for s in _strings(json.loads(block)) if len(s) > 20][:6] or ["no evidence"]
    return {
        "category": "database", "category_confidence": 0.7,
        "hypotheses": [
            {"cause": "orders-db connection pool exhausted", "confidence": 0.8, "evidence": strings[:3],
             "category": "database", "service": "orders-db", "fault_type": None},
            {"cause": "gateway retries amplify load", "confidence": 0.3, "evidence": strings[3:6] or strings[:1],
             "category": "application", "service": "api-gateway", "fault_type": None},
        ],
        "remediation": [{"action": "raise the pool size", "command": None, "expected_outcome": "errors stop",
                         "risk_level": "medium"}],
    }


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


INCIDENT = simulate("db_pool_exhaustion", seed=3)


# each example runs the whole pipeline (~2 s); no shrinking: a failure names the leaked kinds as it is
@settings(max_examples=6, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(positions=st.lists(st.integers(0, len(INCIDENT.logs)), min_size=len(SECRETS), max_size=len(SECRETS)),
       service=st.sampled_from(["orders-db", "api-gateway", "payment-service"]))
async def test_no_planted_secret_reaches_the_llm_or_the_analysis(positions: list[int], service: str) -> None:
    logs = planted_logs(SECRETS, service, positions, INCIDENT.logs)
    alert = Alert.model_validate({**INCIDENT.alert.model_dump(mode="json"),
                                  "annotations": {"description": SECRETS[0].line + " " + SECRETS[8].line}})
    context = IncidentContext(alert=alert, window=Telemetry(logs=logs, metrics=INCIDENT.metrics))
    with OpenAIStandin(default=respond_with(_echo_model)) as llm:
        config = Settings(openai_base_url=llm.base_url, openai_api_key="sk-test", openai_model="standin",
                          llm_max_attempts=1, llm_timeout_seconds=10)
        reasoner = LLMReasoner(config, fallback=EvidenceReasoner())
        pipeline = local_pipeline(2000, reason=reasoner.reason, min_chunks=2)
        analysis = await pipeline.analyze("00000000-0000-0000-0000-000000000001", context)
        sent = "".join(r.body.decode("utf-8", "replace") for r in llm.requests)
    assert llm.requests, "the LLM stand-in was asked"
    assert leaks(sent, SECRETS) == [], "sent to the LLM"
    assert "[REDACTED:" in sent
    stored = analysis.model_dump_json()
    assert leaks(stored, SECRETS) == [], "in the analysis"
    assert analysis.reasoner == "llm:standin"
    assert analysis.stats.redactions >= len(SECRETS) // 2, analysis.stats


def test_the_corpus_itself_is_found_by_the_check() -> None:
    """The leak check is not blind: every planted line leaks before redaction."""
    text = "\n".join(s.line for s in SECRETS)
    assert leaks(text, SECRETS) == [s.kind for s in SECRETS]
