"""The incident pages on the running app: list, detail, filters, escaping and sign-in."""

from __future__ import annotations

import uuid

import httpx
import pytest
from markupsafe import escape

from tests.support.stored_incident import analyze_simulated

pytestmark = pytest.mark.serve

XSS = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def viewer(serve_app: str, auth_headers):
    with httpx.Client(base_url=serve_app, timeout=120, headers=auth_headers("viewer")) as c:
        yield c


@pytest.fixture(scope="module")
def anon(serve_app: str):
    with httpx.Client(base_url=serve_app, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def stored(serve_app: str, auth_headers) -> dict:
    """One analysis of a simulated outage on a service of its own, with script tags in a log line and the alert."""
    def plant_script_tags(body: dict) -> None:
        body["alert"]["annotations"] = {"description": f"error rate high {XSS}"}
        body["logs"] += [f"2024-01-07T10:29:{s:02d}Z ERROR payments-service provider said {XSS} and failed"
                         for s in range(0, 60, 2)]

    return analyze_simulated(serve_app, auth_headers, "third_party_outage", "pages", change=plant_script_tags)


def test_the_list_shows_the_incident_with_its_top_cause(viewer: httpx.Client, stored: dict) -> None:
    page = viewer.get("/ui/incidents", params={"service": stored["service"]})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    analysis = stored["analysis"]
    top = analysis["hypotheses"][0]
    assert f'/ui/incidents/{analysis["incident_id"]}' in page.text
    assert str(escape(top["cause"])) in page.text
    assert f'{100 * top["confidence"]:.0f} %' in page.text
    assert "1 incident," in page.text


def test_filters_work_as_the_api_s(viewer: httpx.Client, stored: dict) -> None:
    mine = f'/ui/incidents/{stored["analysis"]["incident_id"]}'
    category = stored["analysis"]["classification"]["category"]
    other = "security" if category != "security" else "network"
    cases = [({"category": category}, True), ({"category": other}, False), ({"severity": "critical"}, True),
             ({"severity": "info"}, False), ({"status": "open"}, True), ({"status": "resolved"}, False),
             ({"since": "2024-01-07T00:00"}, True), ({"until": "2024-01-07T00:00"}, False),
             ({"since": "", "category": ""}, True)]
    for params, shown in cases:
        page = viewer.get("/ui/incidents", params={"service": stored["service"], **params})
        assert page.status_code == 200, (params, page.text)
        assert (mine in page.text) is shown, params
    bad = viewer.get("/ui/incidents", params={"category": "nope", "since": "yesterday"})
    assert bad.status_code == 400 and "category: one of" in bad.text and "since: not a date" in bad.text


def test_paging_keeps_the_filters(viewer: httpx.Client, stored: dict) -> None:
    page = viewer.get("/ui/incidents", params={"page_size": 1, "severity": "critical"})
    assert page.status_code == 200
    if "rel=\"next\"" in page.text:
        assert "severity=critical" in page.text and "page=2" in page.text and "page_size=1" in page.text


def test_the_incident_page_shows_the_analysis_escaped(viewer: httpx.Client, stored: dict) -> None:
    analysis = stored["analysis"]
    page = viewer.get(f'/ui/incidents/{analysis["incident_id"]}')
    assert page.status_code == 200
    html = page.text
    assert str(escape(analysis["summary"])) in html
    assert analysis["classification"]["category"] in html
    for hypothesis in analysis["hypotheses"]:
        assert str(escape(hypothesis["cause"])) in html
        for evidence in hypothesis["evidence"]:
            assert str(escape(evidence)) in html
    commands = [s["command"] for s in analysis["remediation"] if s["command"]]
    assert commands, "the scenario's playbook has commands"
    for command in commands:
        assert str(escape(command)) in html
    assert html.count('class="copy"') == len(commands)
    assert "<svg class=\"timeline\"" in html and "alert 10:30:00" in html
    assert "mark-metric" in html and "mark-bucket" in html


def test_no_script_from_log_text_or_the_alert_survives(viewer: httpx.Client, stored: dict) -> None:
    html = viewer.get(f'/ui/incidents/{stored["analysis"]["incident_id"]}').text
    assert "&lt;script&gt;" in html, "the planted text is shown, escaped"
    assert "<script>" not in html and "alert(1)</script>" not in html
    assert html.count("<script") == 1 and '<script src="/ui/static/ui.js" defer></script>' in html
    listed = viewer.get("/ui/incidents", params={"service": stored["service"]}).text
    assert "<script>" not in listed


def test_pages_forbid_inline_script_and_use_no_cdn(viewer: httpx.Client, stored: dict) -> None:
    page = viewer.get(f'/ui/incidents/{stored["analysis"]["incident_id"]}')
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "default-src 'none'" in policy
    assert 'src="http' not in page.text and 'href="http' not in page.text
    for name, kind in (("ui.css", "text/css"), ("ui.js", "text/javascript")):
        asset = viewer.get(f"/ui/static/{name}")
        assert asset.status_code == 200 and asset.headers["content-type"].startswith(kind)
    assert viewer.get("/ui/static/../pages.py").status_code == 404


def test_unknown_incident_is_a_404_page(viewer: httpx.Client) -> None:
    for incident_id in (str(uuid.uuid4()), "not-a-uuid"):
        page = viewer.get(f"/ui/incidents/{incident_id}")
        assert page.status_code == 404 and "No such incident" in page.text
        assert page.headers["content-type"].startswith("text/html")


def test_a_viewer_is_required(anon: httpx.Client, stored: dict) -> None:
    mine = f'/ui/incidents/{stored["analysis"]["incident_id"]}'
    for path in ("/ui/incidents", mine):
        page = anon.get(path)
        assert page.status_code == 401 and 'action="/ui/login"' in page.text
        assert str(escape(stored["analysis"]["summary"])) not in page.text
    bad = anon.get(mine, headers={"Authorization": "Bearer garbage.token.value"})
    assert bad.status_code == 401 and "malformed" in bad.text and "garbage.token.value" not in bad.text
    assert anon.get(mine, cookies={"rca_ui": "garbage.token.value"}).status_code == 401


def test_sign_in_sets_an_http_only_cookie_for_the_pages(serve_app: str, auth_headers, stored: dict) -> None:
    token = auth_headers("viewer")["Authorization"].removeprefix("Bearer ")
    mine = f'/ui/incidents/{stored["analysis"]["incident_id"]}'
    with httpx.Client(base_url=serve_app, timeout=120) as browser:
        refused = browser.post("/ui/login", data={"credential": "not-a-token"})
        assert refused.status_code == 401 and "not-a-token" not in refused.text
        cross = browser.post("/ui/login", data={"credential": token}, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        signed = browser.post("/ui/login", data={"credential": token})
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/incidents"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ui" in cookie
        page = browser.get(mine)
        assert page.status_code == 200 and str(escape(stored["analysis"]["summary"])) in page.text
        assert token not in page.text
        assert browser.get("/api/incidents").status_code == 401, "the cookie opens the pages only, not the API"
        browser.post("/ui/logout")
        assert browser.get(mine).status_code == 401


def test_each_evidence_item_links_to_what_it_cites(viewer: httpx.Client, stored: dict) -> None:
    analysis = stored["analysis"]
    html = viewer.get(f'/ui/incidents/{analysis["incident_id"]}').text
    cited = analysis["cited"]
    assert cited["templates"] and cited["metrics"], "the outage's evidence quotes templates and names metrics"
    assert "What the evidence cites" in html
    for i, template in enumerate(cited["templates"], start=1):
        assert f'id="cite-template-{i}"' in html
        assert f'<code>{escape(template["text"])}</code>' in html
        for line in template["exemplars"]:
            assert str(escape(line)) in html
        for ref in template["cited_by"]:
            item = html.split(f'id="evidence-{ref["hypothesis"] + 1}-{ref["evidence"] + 1}"', 1)[1].split("</li>\n", 1)[0]
            assert f'href="#cite-template-{i}"' in item
    for i, metric in enumerate(cited["metrics"], start=1):
        row = html.split(f'id="cite-metric-{i}"', 1)[1].split("</tr>", 1)[0]
        assert metric["name"] in row and metric["service"] in row and f'{metric["peak"]:.4g}' in row
    assert analysis["onset"] and "onset-line" in html
    assert f'{analysis["baseline_range"]["lines"]} log lines' in html


def test_sign_in_trusts_the_browser_s_fetch_metadata(serve_app: str, auth_headers) -> None:
    """A page sent with Referrer-Policy no-referrer would make a browser's POST carry Origin: null; the
    pages send same-origin, and Sec-Fetch-Site (sent by every current browser) decides first."""
    token = auth_headers("viewer")["Authorization"].removeprefix("Bearer ")
    with httpx.Client(base_url=serve_app, timeout=120) as browser:
        form = browser.get("/ui/login")
        assert form.headers["referrer-policy"] == "same-origin"
        cross = browser.post("/ui/login", data={"credential": token},
                             headers={"Sec-Fetch-Site": "cross-site", "Origin": serve_app})
        assert cross.status_code == 403 and "set-cookie" not in cross.headers
        same = browser.post("/ui/login", data={"credential": token}, headers={"Sec-Fetch-Site": "same-origin", "Origin": "null"})
        assert same.status_code == 303 and "rca_ui=" in same.headers["set-cookie"]
