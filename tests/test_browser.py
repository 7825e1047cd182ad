"""The web page and the HTML report in a real browser (headless Chromium): a prompt uploaded on the
page comes back as audio, a corrupt one as a message, and the report's players and figures load
from disk. Slow: `make test-slow`. AUDIOLM_SCREENSHOT=path keeps the page's screenshot."""

from __future__ import annotations

import os
import shutil

import pytest

pytest.importorskip("gradio", reason="the web extra is not installed (pip install -e '.[web]')")
pytest.importorskip("selenium", reason="selenium is in the dev extra")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.browser import external_requests, headless_chromium  # noqa: E402

pytestmark = pytest.mark.slow
GENERATION_TIMEOUT = 180  # seconds for the tiny model on 2 busy cores, page load included


def upload_and_press(chrome, url: str, path, tab: str = "continue"):
    chrome.get(url)
    wait = WebDriverWait(chrome, 60)
    wait.until(lambda c: c.find_element(By.CSS_SELECTOR, f"#{tab}-prompt input[type=file]")).send_keys(str(path))
    # the upload finished once the prompt's own player shows
    wait.until(lambda c: c.find_elements(By.CSS_SELECTOR, f"#{tab}-prompt [data-testid=download-link]")
               or c.find_elements(By.CSS_SELECTOR, ".toast-body"))
    chrome.find_element(By.ID, f"{tab}-button").click()


def test_the_page_continues_an_uploaded_prompt(served, speech_wav, tmp_path):
    url, _ = served
    with headless_chromium() as chrome:
        upload_and_press(chrome, url, speech_wav)
        tabs = [b.text for b in chrome.find_elements(By.CSS_SELECTOR, "[role=tab]")]
        assert tabs == ["Continue", "Speak", "Convert", "Transcribe"]
        link = WebDriverWait(chrome, GENERATION_TIMEOUT).until(
            lambda c: c.find_elements(By.CSS_SELECTOR, "#continue-result [data-testid=download-link]"))[0]
        href = link.get_attribute("href")
        assert href.startswith(url) and href.endswith(".wav")
        # the browser fetches the result: a wav of the seconds asked (4 s by default)
        head = chrome.execute_async_script(
            "const done = arguments[1]; fetch(arguments[0]).then(r => r.arrayBuffer()).then(b => "
            "done([new TextDecoder().decode(b.slice(0, 4)), b.byteLength]))", href)
        assert head[0] == "RIFF" and head[1] > 4 * 16000 * 2 * 0.9, head
        image = WebDriverWait(chrome, 30).until(lambda c: c.find_elements(By.CSS_SELECTOR, "#continue-spectrogram img"))[0]
        WebDriverWait(chrome, 30).until(lambda c: c.execute_script("return arguments[0].naturalWidth", image) > 100)
        assert external_requests(chrome, url) == []  # fonts, scripts, everything from this machine
        shot = tmp_path / "serve.png"
        chrome.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get("AUDIOLM_SCREENSHOT"):
            shutil.copy(shot, os.environ["AUDIOLM_SCREENSHOT"])


def test_a_corrupt_upload_is_a_message_not_a_traceback(served, bad_audio_files):
    url, _ = served
    corrupt, problem = bad_audio_files[0]
    with headless_chromium() as chrome:
        upload_and_press(chrome, url, corrupt)
        toast = WebDriverWait(chrome, GENERATION_TIMEOUT).until(
            lambda c: [t for t in c.find_elements(By.CSS_SELECTOR, ".toast-body") if problem in t.text])
        assert "prompt:" in toast[0].text
        assert "Traceback" not in chrome.page_source
        assert not chrome.find_elements(By.CSS_SELECTOR, "#continue-result [data-testid=download-link]")


def test_the_html_report_plays_from_disk(tiny_continuations):
    report = tiny_continuations.run_dir / "report.html"
    with headless_chromium() as chrome:
        chrome.get(report.as_uri())
        players = chrome.find_elements(By.TAG_NAME, "audio")
        assert len(players) >= 3  # prompt + continuation, semantic-only continuation, per example
        durations = WebDriverWait(chrome, 30).until(lambda c: c.execute_script(
            "const a = [...document.querySelectorAll('audio')]; "
            "return a.every(x => x.readyState >= 1) ? a.map(x => x.duration) : null"))
        assert all(d > 0.5 for d in durations), durations
        widths = chrome.execute_script("return [...document.images].map(i => i.complete ? i.naturalWidth : 0)")
        assert widths and all(w > 100 for w in widths), widths
        assert external_requests(chrome, "file://") == []
