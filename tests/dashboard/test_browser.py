"""The dashboard in a real headless Chromium, against a real `tidal serve`
(no auth, loopback): every page loads without a console error, clicking
through shows the state ``tidal.admin`` reports, Retry and Drop act on the
failed ops, the chart has its data points. Screenshots of each page go to
test-artifacts/dashboard/."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from tidal import admin

from .browser import screenshot
from .conftest import DashServer, load, wait_for, wait_until_rendered

pytestmark = pytest.mark.slow


def cells(row: object, selector: str) -> str:
    return str(row.find_element(By.CSS_SELECTOR, selector).text)  # type: ignore[attr-defined]


def test_overview_shows_components_flows_freshness_and_the_chart(dash: DashServer, browser: WebDriver) -> None:
    load(browser, dash.page("/"))
    assert browser.find_element(By.ID, "app-name").text == "dash"
    found = browser.find_elements(By.CSS_SELECTOR, "#components tbody tr")
    rows = {r.get_attribute("data-component"): r for r in found}
    assert set(rows) == {"Docs", "Prefs"}
    docs = rows["Docs"]
    flows = docs.text
    assert "serve count (sync)" in flows and "update index" in flows
    assert "on Note:insert,update,delete" in flows and "every 3600s" in flows
    queues = {q.component: q for q in admin.queues(dash.app, ["Docs", "Prefs"])}
    assert cells(docs, "td.failed") == str(queues["Docs"].failed) == "2"
    assert cells(rows["Prefs"], "td.instances") == str(len(admin.instances(dash.app, "Prefs"))) == "2"
    assert cells(rows["Prefs"], "td.depth") == str(queues["Prefs"].pending)

    bars = browser.find_elements(By.CSS_SELECTOR, "svg#timeline rect.throughput-bar")
    points = browser.find_elements(By.CSS_SELECTOR, "svg#timeline circle.lag-point")
    timeline = admin.run_timeline(dash.app)
    assert len(bars) == len(timeline)  # one bar per minute of the last hour
    shown = sum(int(b.get_attribute("data-count") or 0) for b in bars)
    assert shown == sum(b.serves + b.updates for b in timeline) >= 12
    assert len(points) == sum(b.lag_p50_ms is not None for b in timeline) >= 1
    assert all(float(p.get_attribute("data-lag") or -1) >= 0 for p in points)
    screenshot(browser, "overview")


def test_click_through_to_an_instance_and_its_key_history(dash: DashServer, browser: WebDriver) -> None:
    load(browser, dash.page("/"))
    browser.find_element(By.CSS_SELECTOR, "tr[data-component=Prefs] a.component-link").click()
    wait_until_rendered(browser, "#/components/Prefs")
    listed = {
        r.get_attribute("data-instance"): r.find_elements(By.TAG_NAME, "td")[1].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#instances tbody tr")
    }
    assert listed == {i.instance: str(i.version) for i in admin.instances(dash.app, "Prefs")}
    assert "update remember" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "component")

    browser.find_element(By.CSS_SELECTOR, "tr[data-instance=u1] a.instance-link").click()
    wait_until_rendered(browser, "#/components/Prefs/instances/u1")
    state = admin.state(dash.app, "Prefs", "u1", values=True)
    assert browser.find_element(By.ID, "state-version").text == str(state.version)
    shown = {
        r.get_attribute("data-key"): (cells(r, "td.version"), r.find_element(By.CSS_SELECTOR, "td.size"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#state tbody tr[data-key]")
    }
    assert set(shown) == {k.key for k in state.keys} == {"events", "summary"}
    for key in state.keys:
        version, size = shown[key.key]
        assert version == str(key.version)
        assert size.get_attribute("data-bytes") == str(key.size)
    events = browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] code.preview").text
    assert events == "['hiking', 'climbing', 'camping']"

    browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] button.history-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.history tr[data-version]"))
    versions = [
        r.get_attribute("data-version") for r in browser.find_elements(By.CSS_SELECTOR, "tr.history tr[data-version]")
    ]
    assert versions == [str(v.version) for v in admin.key_history(dash.app, "Prefs", "u1", "events")]
    screenshot(browser, "instance")


def test_rollback_button_restores_a_key(dash: DashServer, browser: WebDriver) -> None:
    load(browser, dash.page("/components/Prefs/instances/u2"))
    browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] button.history-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.history button.rollback"))
    before = admin.key_history(dash.app, "Prefs", "u2", "events")
    target = before[1]  # the version before the current one: ['reading']
    browser.find_element(By.CSS_SELECTOR, f"tr.history tr[data-version='{target.version}'] button.rollback").click()
    WebDriverWait(browser, 10).until(lambda d: "restored to version" in d.find_element(By.ID, "notice").text)
    after = admin.state(dash.app, "Prefs", "u2", values=True)
    events = next(k for k in after.keys if k.key == "events")
    assert events.value == target.value == "['reading']"
    assert after.version == max(k.version for k in before) + 1
    assert browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] code.preview").text == "['reading']"


def test_queue_retry_and_drop_act_on_the_failed_ops(dash: DashServer, browser: WebDriver) -> None:
    failed = {f.instance: f for f in admin.failures(dash.app, "Docs")}
    assert set(failed) == {"doc-a", "doc-b"}
    load(browser, dash.page("/queue"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#failures .failure")
    assert {c.get_attribute("data-op-id") for c in cards} == {str(f.op_id) for f in failed.values()}
    depth = browser.find_element(By.CSS_SELECTOR, "#queues tr[data-component=Docs]")
    assert cells(depth, "td.depth") == "0"
    card_a = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{failed['doc-a'].op_id}']")
    assert "RuntimeError: index offline: cannot add beta" in card_a.text
    card_a.find_element(By.TAG_NAME, "summary").click()  # open the traceback
    traceback = card_a.find_element(By.CSS_SELECTOR, "pre.traceback").text
    assert "Traceback (most recent call last)" in traceback and "in index" in traceback
    screenshot(browser, "queue")

    dash.fail_file.unlink()  # the index is back: a retry can succeed
    card_a.find_element(By.CSS_SELECTOR, "button.retry").click()
    WebDriverWait(browser, 10).until(lambda d: "queued again as op" in d.find_element(By.ID, "notice").text)
    wait_for(lambda: admin.state(dash.app, "Docs", "doc-a", values=True).version >= 3, "the retried op to commit")
    titles = next(k for k in admin.state(dash.app, "Docs", "doc-a", values=True).keys if k.key == "titles")
    assert titles.value == "['alpha', 'beta']"
    assert [f.instance for f in admin.failures(dash.app, "Docs")] == ["doc-b"]

    card_b = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{failed['doc-b'].op_id}']")
    card_b.find_element(By.CSS_SELECTOR, "button.drop").click()
    WebDriverWait(browser, 10).until(lambda d: "dropped" in d.find_element(By.ID, "notice").text)
    assert admin.failures(dash.app, "Docs") == []
    assert browser.find_element(By.ID, "failures").text == "No failed ops."
    doc_b = {k.key: k.value for k in admin.state(dash.app, "Docs", "doc-b", values=True).keys}
    assert doc_b["titles"] == "[]"  # dropped: never applied


def test_runs_page_shows_latency_errors_feedback_and_filters(dash: DashServer, browser: WebDriver) -> None:
    load(browser, dash.page("/runs"))
    stats = {s_.get_attribute("data-flow"): s_ for s_ in browser.find_elements(By.CSS_SELECTOR, "#stats tbody tr")}
    expected = {(s.component, s.flow, s.kind): s for s in admin.run_stats(dash.app)}
    assert set(stats) == {"/".join(k) for k in expected}
    serve = expected[("Prefs", "recommend", "serve")]
    row = stats["Prefs/recommend/serve"]
    assert (serve.feedback_count, serve.feedback_mean_score) == (2, 0.5)
    assert cells(row, "td.feedback-count") == "2" and row.text.endswith("0.50")
    assert "ms" in row.text  # latency percentiles
    update = stats["Docs/add/update"].find_elements(By.TAG_NAME, "td")
    assert update[4].text == str(expected[("Docs", "add", "update")].errors) and int(update[4].text) >= 2
    listed = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run]")
    assert len(listed) == len(admin.runs(dash.app, limit=50))
    screenshot(browser, "runs")

    Select(browser.find_element(By.ID, "filter-status")).select_by_value("error")
    wait_until_rendered(browser, "#/runs?status=error")
    shown = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run]")
    errors = admin.runs(dash.app, status="error", limit=50)
    assert {r.get_attribute("data-run") for r in shown} == {r.id for r in errors}
    assert len(errors) >= 2 and {r.get_attribute("data-status") for r in shown} == {"error"}
    assert "index offline" in shown[0].text
