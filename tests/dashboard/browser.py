"""A real headless Chromium for the dashboard tests, driven by Selenium
through the system's ``chromedriver``.

:func:`find_chromium` finds ``chromium`` and ``chromedriver`` and, when
either is missing, installs the Debian packages ``chromium`` and
``chromium-driver`` with apt (through ``sudo -n`` unless root). A missing
browser is a failure, never a skip. Selenium Manager is kept offline
(``SE_OFFLINE``) and given the driver's path, so nothing is downloaded.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("SE_OFFLINE", "true")

from installing import apt_install
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

APT_INSTALL = (
    "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
    "apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 chromium chromium-driver"
)
"""Shell command that installs the browser and its driver (prefixed with ``sudo -n`` unless root)."""

BROWSERS = ("chromium", "chromium-browser")

SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"
"""Where the tests save a screenshot of each page (repo-root relative: test-artifacts/dashboard/)."""


class ChromiumUnavailable(RuntimeError):
    """Chromium or chromedriver could not be found or installed. Tests fail with it; they never skip."""


def _locate() -> tuple[str, str] | None:
    browser = next((found for name in BROWSERS if (found := shutil.which(name))), None)
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def install_chromium() -> None:
    """Install ``chromium`` and ``chromium-driver`` with apt; ChromiumUnavailable with apt's output if that fails."""
    apt_install(
        APT_INSTALL,
        "chromium",
        ChromiumUnavailable,
        no_apt="chromium and chromedriver are missing and apt-get is not available to install them",
    )


def find_chromium(install: bool = True) -> tuple[str, str]:
    """Paths of the browser and of chromedriver, installing them with apt when missing."""
    found = _locate()
    if found is None and install:
        install_chromium()
        found = _locate()
    if found is None:
        raise ChromiumUnavailable("chromium (or chromium-browser) and chromedriver are not on $PATH")
    return found


def start_browser() -> webdriver.Chrome:
    """A headless Chromium whose console log can be read with ``get_log("browser")``."""
    browser, driver = find_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--window-size=1360,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    chrome.set_page_load_timeout(30)
    return chrome


def console_errors(chrome: webdriver.Chrome, allowed: tuple[str, ...] = ()) -> list[str]:
    """SEVERE console entries since the last call, but those containing every part of ``allowed``."""
    entries = chrome.get_log("browser")
    severe = [str(e["message"]) for e in entries if e.get("level") == "SEVERE"]
    return [m for m in severe if not (allowed and all(part in m for part in allowed))]


def screenshot(chrome: webdriver.Chrome, name: str) -> Path:
    """Save the whole page as test-artifacts/dashboard/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    height = chrome.execute_script("return document.documentElement.scrollHeight")
    chrome.set_window_size(1360, max(1000, min(int(height) + 40, 4000)))
    if not chrome.save_screenshot(str(path)):
        raise AssertionError(f"could not save the screenshot {path}")
    chrome.set_window_size(1360, 1000)
    return path
