"""The incident pages in a real browser: sign in, list -> incident -> an evidence link, what is
shown checked against the stored analysis, screenshots saved; accessibility checked with axe-core
(labels, contrast, names, landmarks) and by keyboard."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.serve, pytest.mark.browser]

#: axe-core rule sets run on every page: WCAG 2.0/2.1 levels A and AA (labels, contrast, names, ...)
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


def _signed_in(browser, serve_app: str, auth_headers, role: str = "viewer"):
    """A fresh browser context signed in through the login form, as a person would."""
    # bypass_csp only so the test can inject axe-core; the app's own pages run no inline script either way
    context = browser.new_context(base_url=serve_app, bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto("/ui/incidents")
    assert page.locator("h1").inner_text() == "Sign in"
    page.get_by_label("Token or API key").fill(auth_headers(role)["Authorization"].removeprefix("Bearer "))
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in").click()
    assert page.url == f"{serve_app}/ui/incidents" and page.locator("h1").inner_text() != "Sign in", \
        (page.url, page.locator("main").inner_text()[:300])
    return context, page


def _axe_violations(page, axe: Path) -> list[str]:
    page.add_script_tag(path=str(axe))
    result = page.evaluate("tags => axe.run(document, {runOnly: {type: 'tag', values: tags}})", WCAG)
    return [f"{v['id']}: {v['help']} ({len(v['nodes'])}x, e.g. {v['nodes'][0]['html'][:120]})" for v in result["violations"]]


def test_list_to_incident_to_evidence(browser, serve_app: str, auth_headers, stored_incident: dict, tmp_path: Path) -> None:
    analysis = stored_incident["analysis"]
    context, page = _signed_in(browser, serve_app, auth_headers)
    try:
        page.get_by_label("Service").fill(stored_incident["service"])
        page.get_by_role("button", name="Filter").click()
        rows = page.locator("table.incidents tbody tr")
        assert rows.count() == 1 and analysis["hypotheses"][0]["cause"] in rows.first.inner_text()
        row_link = rows.first.locator(f'a[href="/ui/incidents/{analysis["incident_id"]}"]').first
        page.screenshot(path=str(tmp_path / "list.png"), full_page=True)
        row_link.click()
        page.wait_for_url(f'**/ui/incidents/{analysis["incident_id"]}')

        assert page.locator("p.summary").inner_text() == analysis["summary"]
        causes = page.locator("ol.hypotheses > li .cause").all_inner_texts()
        assert causes == [h["cause"] for h in analysis["hypotheses"]] and len(causes) == 3, "the DNS outage has 3"
        evidence = page.locator("ol.hypotheses > li").first.locator("ul.evidence > li")
        assert evidence.count() == len(analysis["hypotheses"][0]["evidence"])
        page.screenshot(path=str(tmp_path / "incident.png"), full_page=True)

        # the first evidence item of the top hypothesis quotes templates: follow its first link
        template = next(t for t in analysis["cited"]["templates"]
                        if any(r == {"hypothesis": 0, "evidence": 0} for r in t["cited_by"]))
        index = analysis["cited"]["templates"].index(template) + 1
        link = page.locator("#evidence-1-1 a.cite-template").first
        assert link.get_attribute("href") == f"#cite-template-{index}"
        link.click()
        page.wait_for_url(f"**#cite-template-{index}")
        target = page.locator(f"#cite-template-{index}")
        assert target.is_visible() and target.evaluate("el => el.matches(':target')")
        assert f'{template["count"]} lines in the window' in target.inner_text()
        assert target.locator("pre.exemplars").inner_text().splitlines()[0] == template["exemplars"][0].splitlines()[0]
        assert target.locator("code").inner_text() == template["text"]
        box = target.bounding_box()
        assert box is not None and -1 <= box["y"] < 900, "the cited template is scrolled into view"
        target.screenshot(path=str(tmp_path / "cited.png"))

        metric = analysis["cited"]["metrics"][0]
        row = page.locator("#cite-metric-1")
        assert metric["name"] in row.inner_text() and metric["service"] in row.inner_text()
        assert page.locator("svg.timeline .onset-line").count() == 1
        assert page.locator("svg.timeline rect.bar-log").count() >= 1
        assert all((tmp_path / name).stat().st_size > 10_000 for name in ("list.png", "incident.png", "cited.png"))
    finally:
        context.close()


def test_pages_pass_axe_core(browser, serve_app: str, auth_headers, stored_incident: dict, axe_script: Path) -> None:
    context, page = _signed_in(browser, serve_app, auth_headers, role="operator")
    try:
        found = {}
        for path in ("/ui/incidents", f'/ui/incidents/{stored_incident["analysis"]["incident_id"]}', "/ui/login"):
            page.goto(path)
            found[path] = _axe_violations(page, axe_script)
        assert found == {path: [] for path in found}
    finally:
        context.close()


def test_the_evidence_links_work_by_keyboard_with_a_visible_focus(browser, serve_app: str, auth_headers,
                                                                  stored_incident: dict) -> None:
    context, page = _signed_in(browser, serve_app, auth_headers)
    try:
        page.goto(f'/ui/incidents/{stored_incident["analysis"]["incident_id"]}')
        first = page.locator("#evidence-1-1 a.cite").first
        href = first.get_attribute("href")
        for _ in range(40):  # Tab from the top of the page until the first evidence link has the focus
            page.keyboard.press("Tab")
            if first.evaluate("el => el === document.activeElement"):
                break
        else:
            pytest.fail("the first evidence link cannot be reached with Tab")
        outline = first.evaluate("el => getComputedStyle(el).outlineStyle + ' ' + getComputedStyle(el).outlineWidth")
        assert outline.startswith("solid") and not outline.endswith(" 0px"), outline
        page.keyboard.press("Enter")
        page.wait_for_url(f"**{href}")
        assert page.locator(str(href)).is_visible()
    finally:
        context.close()
