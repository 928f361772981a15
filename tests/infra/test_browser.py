"""The browser fixture (tests/support/browser.py): Debian's Chromium, headless, loads a
page, runs its script, exposes the DOM, takes a PNG screenshot and leaves nothing behind."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support import browser as browsers
from tests.support.browser import Browser

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>forge test</title></head>
<body style="background:#123"><h1 id="title">Gallery</h1><ul id="grid"></ul>
<p id="prompt">&lt;script&gt;window.__pwned = 1&lt;/script&gt; a cat, 4k</p>
<script>
  for (const name of ["a.png", "b.png"]) {
    const item = document.createElement("li");
    item.textContent = name;
    document.getElementById("grid").appendChild(item);
  }
  window.__ready = "yes";
</script></body></html>"""


def data_url(html: str) -> str:
    return "data:text/html;base64," + base64.b64encode(html.encode()).decode()


def test_a_page_is_loaded_read_and_photographed(browser: Browser, tmp_path: Path) -> None:
    """A data: URL page: its script ran (a marker set, items added to the DOM), the DOM is
    read through Selenium, and the screenshot is a PNG of the window's width."""
    from selenium.webdriver.common.by import By

    driver = browser.driver
    driver.get(data_url(PAGE))
    assert driver.title == "forge test"
    assert driver.execute_script("return window.__ready") == "yes"
    items = driver.find_elements(By.CSS_SELECTOR, "#grid li")
    assert [item.text for item in items] == ["a.png", "b.png"]
    width, height = browser.screenshot(tmp_path / "shot.png")
    assert (tmp_path / "shot.png").read_bytes().startswith(browsers.PNG_SIGNATURE)
    inner = driver.execute_script("return [window.innerWidth, window.devicePixelRatio]")
    assert width == round(inner[0] * inner[1]) and height > 100


def test_escaped_markup_shows_as_text_and_runs_nothing(browser: Browser) -> None:
    """Markup escaped into a page shows as text and its script never runs (no marker): the
    check a gallery test makes for a hostile prompt."""
    from selenium.webdriver.common.by import By

    browser.driver.get(data_url(PAGE))
    shown = browser.driver.find_element(By.ID, "prompt").text
    assert shown == "<script>window.__pwned = 1</script> a cat, 4k"
    assert browser.driver.execute_script("return window.__pwned === undefined") is True


def test_a_stopped_browser_leaves_no_process_or_profile() -> None:
    """After `stop()` no process names the browser's profile folder and the folder is gone;
    a second `stop()` does nothing."""
    reason = browsers.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    own = Browser(width=800, height=600).start()
    profile = own.profile
    assert profile is not None and own.leftover_processes()
    own.stop()
    assert own.leftover_processes() == [] and not profile.exists()
    own.stop()


def test_png_size_refuses_what_is_not_a_png() -> None:
    """`png_size` reads the header of a PNG and refuses other bytes."""
    header = browsers.PNG_SIGNATURE + b"\0\0\0\rIHDR" + (640).to_bytes(4, "big")
    assert browsers.png_size(header + (480).to_bytes(4, "big")) == (640, 480)
    with pytest.raises(ValueError, match="not a PNG"):
        browsers.png_size(b"GIF89a" + bytes(30))
