"""Headless Chromium for the slow browser tests: Debian's `chromium` and `chromium-driver`, driven
by selenium. Installed with apt-get when missing and we are root; otherwise the test is skipped
with the reason. Nothing is downloaded by selenium itself (both paths are given)."""

from __future__ import annotations

import os
import shutil
import subprocess
from contextlib import contextmanager

import pytest

PACKAGES = ["chromium", "chromium-driver"]


def chromium_paths() -> tuple[str, str]:
    """(browser, driver), installing Debian's packages first if need be, or pytest.skip."""
    found = shutil.which("chromium"), shutil.which("chromedriver")
    if all(found):
        return found
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip(f"needs Debian's {' and '.join(PACKAGES)} (apt-get install {' '.join(PACKAGES)}), and we are not root")
    install = ["apt-get", "install", "-y", "-q", *PACKAGES]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, capture_output=True, env=env).returncode:  # stale package lists: update once
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env)
        result = subprocess.run(install, capture_output=True, text=True, env=env)
        if result.returncode:
            pytest.skip(f"apt-get install {' '.join(PACKAGES)} failed: {result.stderr.strip().splitlines()[-1:]}")
    return shutil.which("chromium"), shutil.which("chromedriver")


@contextmanager
def headless_chromium(width: int = 1280, height: int = 1500):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver = chromium_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}",
                "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(arg)
    chrome = webdriver.Chrome(service=Service(driver), options=options)
    try:
        yield chrome
    finally:
        chrome.quit()


def external_requests(chrome, local: str) -> list[str]:
    """Every resource the page fetched from anywhere but `local` (and data: or blob: URLs)."""
    names = chrome.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    return [n for n in names if not n.startswith((local, "data:", "blob:"))]
