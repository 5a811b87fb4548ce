"""The dashboard of `tidal serve --api-key-required` in a headless Chromium:
without a key the data routes answer 401 and the page asks for one; a
read-only key sees everything but its Retry is refused (403) and the page
says so."""

from __future__ import annotations

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from .browser import console_errors, screenshot
from .conftest import DashServer, wait_until_rendered

pytestmark = pytest.mark.slow

DATA_ROUTES = ("overview", "queue", "runs", "stats", "timeline", "components/Prefs", "components/Prefs/instances/u1")


def sign_in(browser: WebDriver, key: str) -> None:
    field = browser.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()


def test_without_a_key_the_data_routes_answer_401_and_the_page_asks_for_one(
    dash_auth: DashServer, browser: WebDriver
) -> None:
    for route in DATA_ROUTES:
        answer = httpx.get(f"{dash_auth.url}/dashboard/api/{route}")
        assert answer.status_code == 401, route
    page = httpx.get(f"{dash_auth.url}/dashboard/")
    assert page.status_code == 200 and "dashboard.js" in page.text  # the page itself holds no data

    browser.get(dash_auth.page("/"))
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "login"))
    assert not browser.find_element(By.ID, "nav").is_displayed()
    assert "Docs" not in browser.find_element(By.TAG_NAME, "main").text
    screenshot(browser, "login")

    sign_in(browser, "tidal_0000_not-a-key")
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "login-error"))
    assert "invalid or revoked API key" in browser.find_element(By.ID, "login-error").text


def test_read_only_key_sees_the_queue_but_retry_is_refused(dash_auth: DashServer, browser: WebDriver) -> None:
    browser.get(dash_auth.page("/queue"))
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "api-key"))
    sign_in(browser, dash_auth.keys["reader"])
    wait_until_rendered(browser, "#/queue")
    assert "key reader · read-only" in browser.find_element(By.ID, "who").text
    failed = dash_auth.failed_ops("Docs")  # op id -> instance, read with SQL
    assert sorted(failed.values()) == ["doc-a", "doc-b"]
    cards = browser.find_elements(By.CSS_SELECTOR, "#failures .failure")
    assert {c.get_attribute("data-op-id") for c in cards} == {str(op_id) for op_id in failed}

    op_id, instance = min(failed.items())
    card = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{op_id}']")
    card.find_element(By.CSS_SELECTOR, "button.retry").click()
    WebDriverWait(browser, 10).until(lambda d: "Refused (403)" in d.find_element(By.ID, "notice").text)
    notice = browser.find_element(By.ID, "notice")
    assert "error" in (notice.get_attribute("class") or "")
    assert f"key 'reader' may not write to Docs/{instance}" in notice.text
    assert dash_auth.failed_ops("Docs") == failed  # nothing re-queued
    assert dash_auth.sql("SELECT count(*) FROM tidal_ops WHERE component = 'Docs' AND status = 0") == [(0,)]
    screenshot(browser, "queue-read-only")
    # The browser logs the refused request itself; that one entry is expected, any other is an error.
    assert console_errors(browser, allowed=(f"/failures/{op_id}/retry", "403")) == []

    headers = {"Authorization": f"Bearer {dash_auth.keys['reader']}"}
    retry = f"{dash_auth.url}/dashboard/api/components/Docs/instances/{instance}/failures/{op_id}/retry"
    assert httpx.post(retry, headers=headers).status_code == 403
    assert httpx.get(f"{dash_auth.url}/dashboard/api/queue", headers=headers).status_code == 200

    browser.find_element(By.ID, "sign-out").click()
    WebDriverWait(browser, 10).until(lambda d: d.find_elements(By.ID, "login"))
    assert browser.execute_script("return sessionStorage.getItem('tidal.dashboard.key')") is None


def test_write_key_can_retry(dash_auth: DashServer, browser: WebDriver) -> None:
    browser.get(dash_auth.page("/queue"))
    WebDriverWait(browser, 15).until(lambda d: d.find_elements(By.ID, "api-key"))
    sign_in(browser, dash_auth.keys["admin"])
    wait_until_rendered(browser, "#/queue")
    failed = dash_auth.failed_ops("Docs")
    op_id, instance = min(failed.items())
    card = browser.find_element(By.CSS_SELECTOR, f".failure[data-op-id='{op_id}']")
    card.find_element(By.CSS_SELECTOR, "button.retry").click()
    WebDriverWait(browser, 10).until(lambda d: "queued again as op" in d.find_element(By.ID, "notice").text)
    notice = browser.find_element(By.ID, "notice").text
    assert op_id not in dash_auth.failed_ops("Docs")
    # Queued again under a fresh, larger id, for the same instance (it may have run and failed again meanwhile).
    requeued = dash_auth.sql(
        "SELECT id FROM tidal_ops WHERE component = 'Docs' AND instance = ? AND id > ?", instance, max(failed)
    )
    assert len(requeued) == 1 and f"queued again as op {requeued[0][0]}" in notice
