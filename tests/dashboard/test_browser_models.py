"""The dashboard's model cost and latency in a real headless Chromium,
against a real `tidal serve` (no auth, loopback): model calls written into
the server's database against its real runs (as the runs log would write
them) show on the Models page, on the component's page, and on the runs
page with each run's calls. Expected numbers are the ones written here.
Screenshots go to test-artifacts/dashboard/."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tidal.relations.builtin import ModelCall

from .browser import screenshot
from .conftest import DashServer, load

pytestmark = pytest.mark.slow


def test_models_page_component_page_and_runs_show_model_cost(dash: DashServer, browser: WebDriver) -> None:
    serves = dash.sql(
        "SELECT id, instance FROM runs WHERE component = 'Prefs' AND kind = 'serve' ORDER BY started_at DESC"
    )
    run_id, instance = serves[0]
    now = datetime.now(UTC)
    common = {"run_id": run_id, "component": "Prefs", "instance": instance, "flow": "recommend",
              "endpoint": "https://api.example.com/v1", "started_at": now}  # fmt: skip
    dash.app.insert_many(
        [
            ModelCall(model="gpt-4o", prompt_tokens=1200, completion_tokens=300, cost=1.25, latency_ms=400.0, **common),
            ModelCall(
                model="gpt-4o",
                prompt_tokens=800,
                completion_tokens=200,
                cost=0.75,
                latency_ms=200.0,
                cache_hit="exact",
                **common,
            ),
            ModelCall(
                model="embed-small", operation="embedding", prompt_tokens=50, cost=0.0001, latency_ms=20.0, **common
            ),
        ]
    )

    load(browser, dash.page("/models"))
    rows = {r.get_attribute("data-usage"): r for r in browser.find_elements(By.CSS_SELECTOR, "#models tbody tr")}
    assert set(rows) == {"gpt-4o", "embed-small"}
    gpt = rows["gpt-4o"]
    assert gpt.find_element(By.CSS_SELECTOR, "td.cost").text == "$2.00"
    assert gpt.find_element(By.CSS_SELECTOR, "td.calls").text == "2"
    assert gpt.find_element(By.CSS_SELECTOR, "td.tokens").text == "2,500"
    assert gpt.find_element(By.CSS_SELECTOR, "td.p50").text == "300 ms"
    assert gpt.find_element(By.CSS_SELECTOR, "td.cache-hits").text == "50%"
    assert rows["embed-small"].find_element(By.CSS_SELECTOR, "td.cost").text == "$0.0001"
    assert browser.find_element(By.ID, "models-cost").text == "$2.00"
    flow = browser.find_element(By.CSS_SELECTOR, "#model-flows tr[data-usage='Prefs/recommend']")
    assert flow.find_element(By.CSS_SELECTOR, "td.cost").text == "$2.00"
    day = browser.find_element(By.CSS_SELECTOR, f"#instance-days tr[data-instance-day='Prefs/{instance}/{now.date()}']")
    assert day.find_element(By.CSS_SELECTOR, "td.cost").text == "$2.00"
    assert browser.find_element(By.CSS_SELECTOR, "nav a[data-page=models]").get_attribute("class") == "active"
    screenshot(browser, "models")

    load(browser, dash.page("/components/Prefs"))
    flow = browser.find_element(By.CSS_SELECTOR, "#component-models tr[data-usage=recommend]")
    assert flow.find_element(By.CSS_SELECTOR, "td.cost").text == "$2.00"
    assert flow.find_element(By.CSS_SELECTOR, "td.p95").text == "380 ms"  # of 20, 200 and 400 ms

    load(browser, dash.page("/runs"))
    run = browser.find_element(By.CSS_SELECTOR, f"#runs tr[data-run='{run_id}']")
    button = run.find_element(By.CSS_SELECTOR, "td.run-cost button.calls-button")
    assert button.text == "$2.00"
    button.click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, "tr.calls tr[data-call]"))
    calls = browser.find_elements(By.CSS_SELECTOR, f"tr.calls[data-calls-of='{run_id}'] tr[data-call]")
    assert sorted(c.find_elements(By.TAG_NAME, "td")[1].text for c in calls) == ["embed-small", "gpt-4o", "gpt-4o"]
    screenshot(browser, "runs-model-calls")
