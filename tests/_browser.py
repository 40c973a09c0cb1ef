"""Headless Chromium for the page tests: the system's browser and driver (Debian's ``chromium``
and ``chromium-driver``), never one downloaded at run time.

``chromium()`` starts a driver at 1280 px wide, or returns None when no browser / driver (or no
selenium) is found, so the tests skip rather than fail on a machine without one; CI installs them
(``.ci/run``). ``screenshot`` saves the whole page, not only the window, via the DevTools protocol.
"""

from __future__ import annotations

import base64
import os
import shutil
from pathlib import Path
from typing import Any

BROWSERS = ("chromium", "chromium-browser", "google-chrome")
WIDTH = 1280


def find_chromium() -> tuple[str, str] | None:
    """(browser, driver) paths, or None."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = shutil.which("chromedriver") or next(
        (p for p in ("/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver") if os.path.exists(p)), None
    )
    return None if browser is None or driver is None else (browser, driver)


def chromium(width: int = WIDTH, height: int = 900) -> Any | None:
    """A headless Chromium driver (console messages logged), or None when none can be found."""
    found = find_chromium()
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        return None
    if found is None:
        return None
    browser, driver = found
    os.environ.setdefault("SE_OFFLINE", "true")  # selenium-manager must not look for downloads
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(arg)
    options.add_argument(f"--window-size={width},{height}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


def console_errors(driver: Any) -> list[str]:
    """Console messages of level SEVERE since the last call (script errors, failed loads)."""
    return [m["message"] for m in driver.get_log("browser") if m["level"] == "SEVERE"]


def screenshot(driver: Any, path: Path, full: bool = True) -> Path:
    """The page as a PNG at the window's width: the whole page (``full``) or the window."""
    if not full:
        driver.save_screenshot(str(path))
        return path
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics["cssContentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
