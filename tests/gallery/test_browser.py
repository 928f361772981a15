"""The gallery in a real browser (Debian's Chromium through Selenium; skipped, saying why,
where it is missing): the grid loads, a search and a facet narrow it, a hostile prompt is
shown as text and runs nothing, compare highlights a differing seed, a row synced while the
page is open appears without a reload, and scrolling loads the next page."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.browser import Browser
from tests.support.gallery import HOSTILE_PROMPT, Gallery, Library, a1111_png


def wait(condition: Callable[[], Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("the page did not get there in time")


def cards(browser: Browser) -> list[Any]:
    from selenium.webdriver.common.by import By

    return list(browser.driver.find_elements(By.CSS_SELECTOR, "#grid .card"))


def test_grid_search_and_facet(library: Library, gallery: Gallery, browser: Browser) -> None:
    """The grid shows the newest rows with thumbnails; a search narrows it to the hostile
    file; choosing a container in its facet shows only that container's rows."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser.driver
    driver.get(gallery.url + "/")
    assert wait(lambda: len(cards(browser)) > 10)
    box = driver.find_element(By.NAME, "q")
    box.send_keys("zanzibarquux", Keys.ENTER)
    wait(lambda: "q=zanzibarquux" in driver.current_url)
    found = cards(browser)
    assert len(found) == 1 and found[0].get_attribute("data-id") == str(
        library.row_id("forge-a", "hostile.png")
    )
    driver.get(gallery.url + "/")
    select = driver.find_element(By.NAME, "container")
    select.find_element(By.CSS_SELECTOR, 'option[value="comfy-b"]').click()
    wait(lambda: "container=comfy-b" in driver.current_url)
    shown = {int(card.get_attribute("data-id")) for card in cards(browser)}
    import sqlite3

    db = sqlite3.connect(library.catalog)
    expected = {r[0] for r in db.execute("SELECT id FROM media WHERE container = 'comfy-b'")}
    db.close()
    assert shown == expected


def test_hostile_prompt_is_text_and_runs_nothing(
    library: Library, gallery: Gallery, browser: Browser
) -> None:
    """The detail view shows the hostile prompt character for character as text; neither
    its <script> nor its onerror ran (no marker, title unchanged)."""
    from selenium.webdriver.common.by import By

    driver = browser.driver
    driver.get(f"{gallery.url}/item/{library.row_id('forge-a', 'hostile.png')}")
    shown = driver.find_element(By.ID, "f-prompt").get_attribute("textContent")
    assert shown == HOSTILE_PROMPT
    time.sleep(0.5)  # an onerror would have fired by now
    assert driver.execute_script("return window.__pwned === undefined")
    assert driver.title != "pwned"
    driver.get(gallery.url + "/?q=zanzibarquux")
    assert driver.execute_script("return window.__pwned === undefined")


def test_compare_highlights_a_differing_seed(
    library: Library, gallery: Gallery, browser: Browser, tmp_path: Path
) -> None:
    """Two files that differ in seed only: compare marks the seed row, not the sampler."""
    from selenium.webdriver.common.by import By

    library.add(a1111_png(tmp_path / "s1.png", "twin", 1001), "forge-a", "twin1.png")
    library.add(a1111_png(tmp_path / "s2.png", "twin", 1002), "forge-a", "twin2.png")
    a, b = library.row_id("forge-a", "twin1.png"), library.row_id("forge-a", "twin2.png")
    browser.driver.get(f"{gallery.url}/compare?a={a}&b={b}")
    seed = browser.driver.find_element(By.CSS_SELECTOR, 'tr[data-field="seed"]')
    sampler = browser.driver.find_element(By.CSS_SELECTOR, 'tr[data-field="sampler"]')
    assert seed.get_attribute("class") == "diff" and sampler.get_attribute("class") == "same"


def test_live_row_and_infinite_scroll(
    library: Library, gallery: Gallery, browser: Browser, tmp_path: Path
) -> None:
    """A row synced while the grid is open appears at its top without a reload; scrolling
    to the end loads the next page (the first holds 60)."""
    driver = browser.driver
    for index in range(60):
        library.add(
            a1111_png(tmp_path / f"p{index}.png", f"filler {index}", index), "bulk", f"{index}.png"
        )
    driver.get(gallery.url + "/")
    wait(lambda: len(cards(browser)) == 60)
    driver.execute_script("window.__marker = 'same page'")
    library.add(a1111_png(tmp_path / "live.png", "arrived live", 9), "forge-a", "arrived.png")
    live = str(library.row_id("forge-a", "arrived.png"))
    wait(lambda: cards(browser)[0].get_attribute("data-id") == live)
    assert driver.execute_script("return window.__marker") == "same page"
    driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    wait(lambda: len(cards(browser)) > 61)
