"""The dashboard in a real headless Chromium, against a real `tidal serve`
(no auth, loopback): every page loads without a console error, clicking
through shows the state the seed wrote (checked with SQL on the server's
SQLite file, not with ``tidal.admin``, which the dashboard's routes call),
Retry and Drop act on the failed ops, the chart has its data points.
Screenshots of each page go to test-artifacts/dashboard/."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from .browser import screenshot
from .conftest import DashServer, load, wait_for, wait_until_rendered

pytestmark = pytest.mark.slow


def cells(row: object, selector: str) -> str:
    return str(row.find_element(By.CSS_SELECTOR, selector).text)  # type: ignore[attr-defined]


def timeline_counts(dash: DashServer) -> tuple[int, int]:
    """What the overview's chart of the last hour should count (every run is
    younger than that): serve and update runs, and the minutes (UTC, as the
    chart's buckets) with an update run that has a lag."""
    ((runs,),) = dash.sql("SELECT count(*) FROM runs WHERE kind IN ('serve', 'update')")
    ((minutes,),) = dash.sql(
        "SELECT count(DISTINCT substr(started_at, 1, 16)) FROM runs WHERE kind = 'update' AND waited_ms IS NOT NULL"
    )
    return int(runs), int(minutes)


def test_overview_shows_components_flows_freshness_and_the_chart(dash: DashServer, browser: WebDriver) -> None:
    before = timeline_counts(dash)  # runs may still reach the log while the page loads
    load(browser, dash.page("/"))
    after = timeline_counts(dash)
    assert browser.find_element(By.ID, "app-name").text == "dash"
    found = browser.find_elements(By.CSS_SELECTOR, "#components tbody tr")
    rows = {r.get_attribute("data-component"): r for r in found}
    assert set(rows) == {"Docs", "Prefs"}
    docs = rows["Docs"]
    flows = docs.text
    assert "serve count (sync)" in flows and "update index" in flows
    assert "on Note:insert,update,delete" in flows and "every 3600s" in flows
    assert cells(docs, "td.failed") == "2"  # doc-a's and doc-b's failed index ops
    assert sorted(dash.failed_ops("Docs").values()) == ["doc-a", "doc-b"]
    assert cells(rows["Prefs"], "td.instances") == "2"  # u1 and u2
    assert dash.sql("SELECT instance FROM tidal_instances WHERE component = 'Prefs' ORDER BY instance") == [
        ("u1",),
        ("u2",),
    ]
    assert cells(rows["Prefs"], "td.depth") == "0"  # every Prefs run was flushed
    assert dash.sql("SELECT count(*) FROM tidal_ops WHERE component = 'Prefs' AND status = 0") == [(0,)]

    bars = browser.find_elements(By.CSS_SELECTOR, "svg#timeline rect.throughput-bar")
    points = browser.find_elements(By.CSS_SELECTOR, "svg#timeline circle.lag-point")
    assert len(bars) == 61  # one bar per minute of the last hour, the current minute included
    shown = sum(int(b.get_attribute("data-count") or 0) for b in bars)
    assert before[0] <= shown <= after[0]
    assert shown >= 12  # the seed's 5 Prefs serves and 5 updates, 3 Docs serves
    assert before[1] <= len(points) <= after[1]
    assert len(points) >= 1
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
    assert listed == {"u1": str(dash.version("Prefs", "u1")), "u2": str(dash.version("Prefs", "u2"))}
    assert listed["u1"] == "4"  # 1 after init_state, +1 for each of its 3 runs
    assert "update remember" in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "component")

    browser.find_element(By.CSS_SELECTOR, "tr[data-instance=u1] a.instance-link").click()
    wait_until_rendered(browser, "#/components/Prefs/instances/u1")
    assert browser.find_element(By.ID, "state-version").text == str(dash.version("Prefs", "u1")) == "4"
    stored = dash.keys_of("Prefs", "u1")
    shown = {
        r.get_attribute("data-key"): (cells(r, "td.version"), r.find_element(By.CSS_SELECTOR, "td.size"))
        for r in browser.find_elements(By.CSS_SELECTOR, "#state tbody tr[data-key]")
    }
    assert set(shown) == set(stored) == {"events", "summary"}
    for key, (version, raw) in stored.items():
        assert shown[key][0] == str(version) == "4"  # both keys written by every update
        assert shown[key][1].get_attribute("data-bytes") == str(len(raw))
    events = browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] code.preview").text
    assert events == "['hiking', 'climbing', 'camping']" == repr(dash.value("Prefs", "u1", "events"))

    browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] button.history-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.history tr[data-version]"))
    versions = [
        r.get_attribute("data-version") for r in browser.find_elements(By.CSS_SELECTOR, "tr.history tr[data-version]")
    ]
    kept = dash.sql(
        "SELECT version FROM tidal_history WHERE component = 'Prefs' AND instance = 'u1' AND key = 'events'"
        " ORDER BY version DESC"
    )
    assert versions == [str(v) for v in [4, *(v for (v,) in kept)]] == ["4", "3", "2", "1"]
    screenshot(browser, "instance")


def test_rollback_button_restores_a_key(dash: DashServer, browser: WebDriver) -> None:
    load(browser, dash.page("/components/Prefs/instances/u2"))
    browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] button.history-button").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.history button.rollback"))
    assert dash.version("Prefs", "u2") == 3  # init_state, then "reading" (version 2) and "chess" (version 3)
    ((old,),) = dash.sql(
        "SELECT value FROM tidal_history WHERE component = 'Prefs' AND instance = 'u2' AND key = 'events'"
        " AND version = 2"
    )
    browser.find_element(By.CSS_SELECTOR, "tr.history tr[data-version='2'] button.rollback").click()
    WebDriverWait(browser, 10).until(lambda d: "restored to version" in d.find_element(By.ID, "notice").text)
    assert dash.version("Prefs", "u2") == 4  # the rollback is a new version
    assert dash.keys_of("Prefs", "u2")["events"] == (4, old)  # version 2's bytes, written again
    assert dash.value("Prefs", "u2", "events") == ["reading"]
    assert browser.find_element(By.CSS_SELECTOR, "tr[data-key=events] code.preview").text == "['reading']"


def test_queue_retry_and_drop_act_on_the_failed_ops(dash: DashServer, browser: WebDriver) -> None:
    failed = {instance: op_id for op_id, instance in dash.failed_ops("Docs").items()}
    assert set(failed) == {"doc-a", "doc-b"}
    load(browser, dash.page("/queue"))
    cards = browser.find_elements(By.CSS_SELECTOR, "#failures .failure")
    assert {c.get_attribute("data-op-id") for c in cards} == {str(op_id) for op_id in failed.values()}
    depth = browser.find_element(By.CSS_SELECTOR, "#queues tr[data-component=Docs]")
    assert cells(depth, "td.depth") == "0"
    card_a = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{failed['doc-a']}']")
    assert "RuntimeError: index offline: cannot add beta" in card_a.text
    card_a.find_element(By.TAG_NAME, "summary").click()  # open the traceback
    traceback = card_a.find_element(By.CSS_SELECTOR, "pre.traceback").text
    assert "Traceback (most recent call last)" in traceback and "in index" in traceback
    screenshot(browser, "queue")

    dash.fail_file.unlink()  # the index is back: a retry can succeed
    card_a.find_element(By.CSS_SELECTOR, "button.retry").click()
    WebDriverWait(browser, 10).until(lambda d: "queued again as op" in d.find_element(By.ID, "notice").text)
    wait_for(lambda: dash.version("Docs", "doc-a") >= 3, "the retried op to commit")
    assert dash.value("Docs", "doc-a", "titles") == ["alpha", "beta"]
    assert list(dash.failed_ops("Docs").values()) == ["doc-b"]

    card_b = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{failed['doc-b']}']")
    card_b.find_element(By.CSS_SELECTOR, "button.drop").click()
    WebDriverWait(browser, 10).until(lambda d: "dropped" in d.find_element(By.ID, "notice").text)
    assert dash.failed_ops("Docs") == {}
    assert dash.sql("SELECT count(*) FROM tidal_ops WHERE component = 'Docs' AND instance = 'doc-b'") == [(0,)]
    assert browser.find_element(By.ID, "failures").text == "No failed ops."
    assert dash.value("Docs", "doc-b", "titles") == []  # dropped: never applied
    assert dash.version("Docs", "doc-b") == 1


def runs_seen(dash: DashServer) -> tuple[set[str], int]:
    """The (component/flow/kind) of every run logged, and how many runs the
    page lists (its latest 50)."""
    flows = {"/".join(row) for row in dash.sql("SELECT DISTINCT component, flow, kind FROM runs")}
    ((count,),) = dash.sql("SELECT count(*) FROM runs")
    return flows, min(int(count), 50)


def test_runs_page_shows_latency_errors_feedback_and_filters(dash: DashServer, browser: WebDriver) -> None:
    before = runs_seen(dash)  # runs may still reach the log while the page loads
    load(browser, dash.page("/runs"))
    after = runs_seen(dash)
    stats = {s_.get_attribute("data-flow"): s_ for s_ in browser.find_elements(By.CSS_SELECTOR, "#stats tbody tr")}
    assert before[0] <= set(stats) <= after[0]
    assert {"Prefs/recommend/serve", "Prefs/recommend/update", "Docs/add/serve", "Docs/add/update"} <= set(stats)
    row = stats["Prefs/recommend/serve"]
    # The seed gave feedback on two of Prefs' serves, scores 1.0 and 0.0.
    assert dash.sql("SELECT count(*), avg(score) FROM feedback WHERE component = 'Prefs' AND flow = 'recommend'") == [
        (2, 0.5)
    ]
    assert cells(row, "td.feedback-count") == "2" and row.text.endswith("0.50")
    assert "ms" in row.text  # latency percentiles
    update = stats["Docs/add/update"].find_elements(By.TAG_NAME, "td")
    errors = dash.sql("SELECT id FROM runs WHERE status = 'error'")
    docs_errors = dash.sql(
        "SELECT count(*) FROM runs WHERE component = 'Docs' AND flow = 'add' AND kind = 'update' AND status = 'error'"
    )
    assert update[4].text == str(docs_errors[0][0]) and int(update[4].text) >= 2  # beta and gamma, at least
    listed = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run]")
    assert before[1] <= len(listed) <= after[1]
    screenshot(browser, "runs")

    Select(browser.find_element(By.ID, "filter-status")).select_by_value("error")
    wait_until_rendered(browser, "#/runs?status=error")
    shown = browser.find_elements(By.CSS_SELECTOR, "#runs tbody tr[data-run]")
    assert {r.get_attribute("data-run") for r in shown} == {run_id for (run_id,) in errors}
    assert len(errors) >= 2 and {r.get_attribute("data-status") for r in shown} == {"error"}
    assert "index offline" in shown[0].text
