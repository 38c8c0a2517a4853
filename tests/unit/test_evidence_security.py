"""The security signal and the reasoner on hand-built attacks, and on refusals that are not attacks.

Each test writes normal traffic of three services and, on top of it, refusals as a server would
log them: sshd's failed passwords, an access log's 401/403, a token check's rejections.
"""

from __future__ import annotations

from datetime import datetime, timezone

from pipelines.reasoning.base import Evidence
from pipelines.reasoning.evidence import EvidenceReasoner
from pipelines.reasoning.signals.lexicon import http_status
from pipelines.reasoning.signals.security import SecuritySignal, refused_share, sources
from pipelines.schemas import Alert, Category
from tests.support.evidence_rows import digest_of, evidence_of

T0 = 1_700_000_000.0
ALERT = Alert(name="HighErrorRate", timestamp=datetime.fromtimestamp(T0, tz=timezone.utc),
              labels={"service": "edge", "namespace": "shop"})
ATTACKERS = ("198.51.77.9", "203.0.113.200", "45.12.8.77")  # any public addresses


def _normal(start: float, n: int = 100) -> list[tuple[str, str, str, float]]:
    rows = []
    for i in range(n):
        t = start + i * 3
        rows.append(("edge", "INFO", f'10.1.2.{i % 50} - - [x] "GET /api/items/{i} HTTP/1.1" 200 512 "-" "app/1.0"', t))
        rows.append(("orders", "INFO", f"order {1000 + i} created", t + 1))
        rows.append(("payments", "INFO", f"payment {2000 + i} captured", t + 2))
    return rows


def _evidence(fault_rows, baseline: bool = False) -> Evidence:
    return evidence_of(ALERT, _normal(T0 - 300) + fault_rows, _normal(T0 - 900) if baseline else None)


def _ssh_burst(service: str = "edge", start: float = T0 - 150, n: int = 60, sources_=ATTACKERS):
    rows = []
    for i in range(n):
        ip = sources_[i % len(sources_)]
        rows.append((service, "INFO", f"Failed password for invalid user admin{i % 7} from {ip} port {40000 + i} ssh2", start + i * 2))
        rows.append((service, "INFO", f"pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={ip}", start + i * 2 + 1))
    return rows


def test_a_burst_of_failed_logins_from_few_internet_addresses_is_an_attack_on_the_service_that_logs_them() -> None:
    verdict = EvidenceReasoner().decide(_evidence(_ssh_burst()))
    top = verdict.hypotheses[0]
    assert top.service == "edge" and top.category == Category.security
    assert verdict.classification.category == Category.security
    assert any(ATTACKERS[0] in e for e in top.evidence)  # the sources are named


def test_failed_logins_as_frequent_before_as_after_are_background_not_an_attack() -> None:
    rows = []
    for i in range(100):  # the internet's steady background: a failed login every 3 s all window long
        rows.append(("edge", "INFO", f"Failed password for root from {ATTACKERS[i % 3]} port {40000 + i} ssh2", T0 - 300 + i * 3))
    assert SecuritySignal().findings(_evidence(rows)) == []


def test_access_log_lines_count_by_their_status_code() -> None:
    assert http_status('45.1.2.3 - - [18/Nov/2025:20:11:35 +0000] "GET /admin HTTP/1.1" 401 61 "-" "curl/8"') == 401
    assert http_status('{"method": "GET", "status": 403, "path": "/x"}') == 403
    assert http_status("[GIN] 2025/01/01 - 10:00:00 | 200 |  1.2ms | 1.2.3.4 | GET \"/\"") == 200
    assert http_status("order 401 created") is None
    # the digest keeps a few samples per template, and the share of a template's samples refused
    # stands for its lines: a scanner's requests (their own client and route) make their own template
    rows = []
    for i in range(80):  # a sweep of admin paths, answered 401/403 in the access log
        ip, code = ATTACKERS[i % 3], (401, 403)[i % 2]
        rows.append(("edge", "INFO", f'{ip} - - [x] "GET /admin/{i % 9} HTTP/1.1" {code} 61 "-" "python-requests/2.31 (scanner)" route=admin', T0 - 150 + i * 2))
    findings = SecuritySignal().findings(_evidence(rows))
    assert [f.service for f in findings] == ["edge"] and findings[0].category == Category.security
    # the same requests answered 200 refuse no one
    ok = [(s, lv, m.replace(" 401 ", " 200 ").replace(" 403 ", " 200 "), t) for s, lv, m, t in rows]
    assert SecuritySignal().findings(_evidence(ok)) == []


def test_refusals_of_our_own_clients_weigh_less_than_refusals_of_the_internet() -> None:
    internal = SecuritySignal().findings(_evidence(_ssh_burst(sources_=("10.0.3.4", "10.0.3.5"))))
    external = SecuritySignal().findings(_evidence(_ssh_burst()))
    assert internal and external and internal[0].strength < external[0].strength
    assert sources("Failed password for root from 10.0.3.4 port 22 ssh2") == ["10.0.3.4"]


def test_a_login_that_fails_on_an_error_of_its_own_is_not_a_refusal() -> None:
    rows = []
    for i in range(60):  # the user database is down: logins fail, nobody was refused
        rows.append(("auth", "ERROR", f"login failed for user u{i}: could not connect to users-db:5432: connection refused "
                                      f"(client {ATTACKERS[i % 3]})", T0 - 150 + i * 2))
    assert SecuritySignal().findings(_evidence(rows)) == []
    verdict = EvidenceReasoner().decide(_evidence(rows))
    assert verdict.classification.category != Category.security


def test_a_client_reporting_a_refused_call_is_not_the_service_under_attack() -> None:
    rows = [("payments", "WARN", f"POST https://api.provider.com/v1/charges -> 401 Unauthorized (attempt {i})", T0 - 150 + i * 2)
            for i in range(60)]
    assert SecuritySignal().findings(_evidence(rows)) == []


def test_against_a_baseline_an_attack_already_going_on_through_the_window_still_counts() -> None:
    rows = _ssh_burst(start=T0 - 300, n=150)  # the burst fills the whole window: no change inside it
    findings = SecuritySignal().findings(_evidence(rows, baseline=True))
    assert findings and findings[0].service == "edge"
    assert "baseline" in findings[0].evidence


def test_the_service_answering_the_attacker_outranks_the_token_checker_it_asks() -> None:
    rows = []
    for i in range(90):
        ip = ATTACKERS[i % 3]
        rows.append(("edge", "INFO", f'{ip} - - [x] "GET /admin/{i % 9} HTTP/1.1" 401 61 "-" "python-requests/2.31 (scanner)" route=admin', T0 - 150 + i * 2))
        if i % 3 == 0:
            rows.append(("token-check", "WARN", "token rejected", T0 - 150 + i * 2))
    verdict = EvidenceReasoner().decide(_evidence(rows))
    assert verdict.hypotheses[0].service == "edge"
    assert verdict.classification.category == Category.security


def test_refused_share_of_a_template_without_refusals_is_zero() -> None:
    digest = digest_of(_normal(T0 - 300))
    assert all(refused_share(t) == 0 for t in digest.templates.values())


def test_a_deny_header_value_is_not_a_refusal() -> None:
    """A response logged with its headers (x-frame-options: "DENY") refused nobody; a policy verdict did."""
    from pipelines.reasoning.signals.lexicon import AUTH_FAILURE

    assert not AUTH_FAILURE.search('Response headers: [x-frame-options:"DENY", content-type:"application/json"]')
    assert AUTH_FAILURE.search('{"action": "DENY", "rule": "sqli-942100", "client": "45.155.205.233"}')
