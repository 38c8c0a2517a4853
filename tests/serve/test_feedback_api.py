"""Feedback and similar incidents on the running app: the API (roles, 404, 422 naming the field),
feedback on incident A making the analysis of a like incident B cite it, accuracy in /api/stats,
and the incident page's similar list and feedback form (operators only, same-origin posts)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from markupsafe import escape

from pipelines.simulate import simulate

pytestmark = pytest.mark.serve

SCENARIO = "db_pool_exhaustion"


@pytest.fixture(scope="module")
def clients(serve_app: str, auth_headers):
    """One client per role of the session app."""
    opened = {role: httpx.Client(base_url=serve_app, timeout=300, headers=auth_headers(role)) for role in ("operator", "viewer")}
    yield opened
    for client in opened.values():
        client.close()


@pytest.fixture(scope="module")
def operator(clients: dict) -> httpx.Client:
    return clients["operator"]


@pytest.fixture(scope="module")
def viewer(clients: dict) -> httpx.Client:
    return clients["viewer"]


#: the scenario's services renamed for this module: a signature no other test's incidents have
RENAME = {"orders-service": f"orders-{uuid.uuid4().hex[:8]}"}


def _analyze(client: httpx.Client, at: datetime) -> dict:
    text = json.dumps(simulate(SCENARIO, seed=11, alert_time=at).request_body())
    for old, new in RENAME.items():
        text = text.replace(old, new)
    response = client.post("/analyze", content=text, headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def incidents(operator: httpx.Client) -> dict:
    """A: analyzed and confirmed (its second hypothesis was right); B: a like incident analyzed after."""
    now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
    a = _analyze(operator, now - timedelta(hours=1))
    given = operator.post(f'/api/incidents/{a["incident_id"]}/feedback',
                          json={"rank": 2, "notes": "doubled the orders-service pool <b>now</b>"})
    assert given.status_code == 201, given.text
    b = _analyze(operator, now)
    return {"a": a, "b": b, "feedback": given.json()}


def test_feedback_on_a_makes_the_analysis_of_b_cite_it(incidents: dict) -> None:
    a, b = incidents["a"], incidents["b"]
    confirmed = incidents["feedback"]
    assert confirmed["confirmed_rank"] == 2 and confirmed["service"] == a["hypotheses"][1]["service"]
    cited = [h for h in b["hypotheses"] if h["service"] == confirmed["service"]]
    assert cited, "B names the confirmed service too"
    line = cited[0]["evidence"][-1]
    assert line.startswith("[history] ") and f'incident {a["incident_id"]}' in line
    assert "doubled the orders-service pool" in line and "confidence raised from" in line
    assert cited[0]["confidence"] > a["hypotheses"][1]["confidence"]


def test_similar_lists_a_first_with_its_confirmed_cause(viewer: httpx.Client, incidents: dict) -> None:
    a, b = incidents["a"], incidents["b"]
    answer = viewer.get(f'/api/incidents/{b["incident_id"]}/similar', params={"limit": 3})
    assert answer.status_code == 200, answer.text
    first = answer.json()[0]
    assert first["incident_id"] == a["incident_id"] and first["similarity"] >= 0.9
    assert first["feedback"]["notes"] == "doubled the orders-service pool <b>now</b>"
    assert len(answer.json()) <= 3
    assert viewer.get(f'/api/incidents/{b["incident_id"]}/similar', params={"limit": 0}).status_code == 422


def test_feedback_roles_unknown_incidents_and_bad_ranks(viewer: httpx.Client, operator: httpx.Client,
                                                        incidents: dict) -> None:
    path = f'/api/incidents/{incidents["b"]["incident_id"]}/feedback'
    refused = viewer.post(path, json={"rank": 1})
    assert refused.status_code == 403 and "operator" in refused.json()["detail"]
    for unknown in (str(uuid.uuid4()), "not-an-id"):
        assert operator.post(f"/api/incidents/{unknown}/feedback", json={"rank": 1}).status_code == 404
        assert viewer.get(f"/api/incidents/{unknown}/similar").status_code == 404
    too_far = operator.post(path, json={"rank": 3 if len(incidents["b"]["hypotheses"]) == 2 else 4})
    assert too_far.status_code == 422 and too_far.json()["detail"].startswith("rank: ")
    both = operator.post(path, json={"rank": 1, "category": "database", "service": "x"})
    assert both.status_code == 422 and "not both" in both.json()["detail"]
    assert operator.post(path, json={"rank": 1, "category": "nope"}).status_code == 422
    listed = viewer.get(path).json()
    assert listed["current"] is None and listed["items"] == [], "nothing was stored by the refused calls"


def test_stats_report_accuracy_from_feedback(viewer: httpx.Client, operator: httpx.Client, incidents: dict) -> None:
    before = viewer.get("/api/stats").json()["accuracy"]
    b = incidents["b"]
    answer = operator.post(f'/api/incidents/{b["incident_id"]}/feedback', json={"rank": 1})
    assert answer.status_code == 201
    after = viewer.get("/api/stats").json()["accuracy"]
    assert (after["feedback"] - before["feedback"], after["top1"] - before["top1"], after["top3"] - before["top3"]) == (1, 1, 1)
    category = b["hypotheses"][0]["category"]
    old = before["by_category"].get(category, {"feedback": 0, "top1": 0})
    assert after["by_category"][category]["top1"] - old["top1"] == 1
    assert after["top1_rate"] == pytest.approx(after["top1"] / after["feedback"], abs=1e-4)


def test_the_page_shows_similar_incidents_and_the_form_to_operators_only(
        viewer: httpx.Client, operator: httpx.Client, incidents: dict) -> None:
    a, b = incidents["a"], incidents["b"]
    page = f'/ui/incidents/{b["incident_id"]}'
    seen = viewer.get(page)
    assert seen.status_code == 200
    assert "Similar past incidents" in seen.text and f'href="/ui/incidents/{a["incident_id"]}"' in seen.text
    assert str(escape("doubled the orders-service pool <b>now</b>")) in seen.text, "notes shown, escaped"
    assert "<b>now</b>" not in seen.text
    assert 'class="feedback"' not in seen.text, "a viewer sees no form"
    shown = operator.get(page)
    assert f'action="{page}/feedback"' in shown.text and 'name="rank"' in shown.text


def test_the_form_records_feedback_from_the_app_s_own_pages(
        serve_app: str, viewer: httpx.Client, operator: httpx.Client, incidents: dict) -> None:
    b = incidents["b"]
    page = f'/ui/incidents/{b["incident_id"]}'
    form = {"rank": "", "category": "network", "service": "egress-proxy", "notes": "proxy restarted"}
    cross = operator.post(f"{page}/feedback", data=form, headers={"Origin": "https://evil.example"})
    assert cross.status_code == 403
    assert viewer.post(f"{page}/feedback", data=form).status_code == 403
    bad = operator.post(f"{page}/feedback", data={**form, "service": ""})
    assert bad.status_code == 422 and "give rank" in bad.text
    sent = operator.post(f"{page}/feedback", data=form, headers={"Origin": serve_app})
    assert sent.status_code == 303 and sent.headers["location"].startswith(page)
    current = viewer.get(f'/api/incidents/{b["incident_id"]}/feedback').json()["current"]
    assert (current["service"], current["category"], current["notes"]) == ("egress-proxy", "network", "proxy restarted")
    assert current["actor"] == "test-operator"
    assert "egress-proxy (network)" in viewer.get(page).text


def test_the_cli_gives_feedback_and_lists_similar_incidents_through_the_api(
        serve_app: str, auth_headers, viewer: httpx.Client, incidents: dict) -> None:
    from typer.testing import CliRunner

    from pipelines.cli import CliError, app

    runner = CliRunner()
    a, b = incidents["a"], incidents["b"]
    token = auth_headers("operator")["Authorization"].removeprefix("Bearer ")
    env = {"RCA_API_URL": serve_app, "RCA_API_TOKEN": token}
    done = runner.invoke(app, ["feedback", b["incident_id"], "--cause", "database", "--service", "orders-db",
                               "--notes", "failover to the replica", "--json"], env=env)
    assert done.exit_code == 0, done.output
    given = json.loads(done.output.strip().splitlines()[-1])
    assert (given["service"], given["notes"]) == ("orders-db", "failover to the replica")
    assert viewer.get(f'/api/incidents/{b["incident_id"]}/feedback').json()["current"]["id"] == given["id"]

    listed = runner.invoke(app, ["similar", b["incident_id"], "--limit", "2", "--json"], env=env)
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.output.strip().splitlines()[-1])[0]["incident_id"] == a["incident_id"]
    table = runner.invoke(app, ["similar", b["incident_id"], "--limit", "1"], env=env)
    assert table.exit_code == 0 and "1 similar past incident" in table.output and a["incident_id"][:8] in table.output

    for args, says in ((["feedback", b["incident_id"], "--rank", "9"], "422 rank: 9 is out of range"),
                       (["feedback", str(uuid.uuid4()), "--rank", "1"], "404 incident"),
                       (["feedback", b["incident_id"], "--rank", "1", "--cause", "database"], "give --rank N, or --cause"),
                       (["feedback", b["incident_id"], "--cause", "database"], "--cause needs --service")):
        refused = runner.invoke(app, args, env=env)
        assert isinstance(refused.exception, CliError) and says in str(refused.exception), (args, refused.exception)
    viewer_env = {**env, "RCA_API_TOKEN": auth_headers("viewer")["Authorization"].removeprefix("Bearer ")}
    forbidden = runner.invoke(app, ["feedback", b["incident_id"], "--rank", "1"], env=viewer_env)
    assert isinstance(forbidden.exception, CliError) and "403" in str(forbidden.exception)
