"""Headless Chromium (Debian's ``chromium`` and ``chromium-driver``) driven by Selenium, for the
dashboard's tests and ``bench dashboard``: no download, the browser's console kept for assertions."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM = "/usr/bin/chromium"
T = TypeVar("T")


@contextmanager
def chromium(width: int = 1280, height: int = 800, tz: str = "UTC") -> Iterator[webdriver.Chrome]:
    """A headless browser whose window is ``width`` x ``height``, in time zone ``tz`` (pinned: the
    pages show local times)."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, env={**os.environ, "TZ": tz})
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver: webdriver.Chrome) -> list[str]:
    """The browser console's errors and warnings since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]


def wait_for(driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], T | None], timeout: float = 10,
             what: str = "condition") -> T:
    """``condition(driver)`` once it is truthy, polling; fails with the console's errors after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition(driver)
        except Exception as exc:  # an element not there yet: shown if it never comes
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not met in {timeout:g} s (last: {last!r}); console: {console_errors(driver)}")


def open_page(driver: webdriver.Chrome, base: str, page: str, timeout: float = 10) -> None:
    """Show ``#/page`` (with its query) and wait until the dashboard has finished a load of that very
    page (not a refresh of the previous one that was under way)."""
    before = driver.execute_script("return window.dash ? window.dash.loads : 0")
    url = f"{base}/dashboard/#/{page}"
    if driver.current_url.split("#")[0] != f"{base}/dashboard/":
        driver.get(url)
        before = 0
    else:
        driver.execute_script("location.hash = arguments[0]", f"#/{page}")
    wait_for(driver, lambda d: d.execute_script(
        "return window.dash && window.dash.loaded === location.hash && window.dash.loads > arguments[0]",
        before), timeout, f"page {page} loaded")


def click(driver: webdriver.Chrome, by: str, value: str, timeout: float = 10) -> None:
    """Click the element, found afresh until the click lands: a live refresh may replace the page's
    elements between finding one and clicking it (a stale element)."""
    def attempt(d: webdriver.Chrome) -> bool:
        d.find_element(by, value).click()
        return True

    wait_for(driver, attempt, timeout, f"click on {value}")
