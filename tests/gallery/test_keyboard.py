"""Keyboard navigation on the item page, in a real browser (Debian's Chromium through
Selenium; skipped, saying why, where it is missing): right/j and left/k step through the
items in the order of the grid the item was opened from (a filtered grid's, across its
pages), Esc returns to that grid."""

from __future__ import annotations

from pathlib import Path

from tests.gallery.test_browser import cards, wait
from tests.support.browser import Browser
from tests.support.gallery import Gallery, Library, a1111_png

PAGE = 60  # the grid's first page (gallery/api.py PAGE)


def press(browser: Browser, key: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(browser.driver).send_keys(key).perform()


def item_id(browser: Browser) -> int:
    url = browser.driver.current_url
    return int(url.rsplit("/item/", 1)[1]) if "/item/" in url else -1


def test_keys_step_through_the_grids_order_and_escape_returns(
    library: Library, gallery: Gallery, browser: Browser, tmp_path: Path
) -> None:
    """From the grid filtered to one container, the first card opened: right/j go to the
    next cards in the grid's order, left/k back; right on the last card of the first page
    fetches the next page and goes on; Esc is the filtered grid again."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    for index in range(PAGE + 2):
        path = a1111_png(tmp_path / f"k{index}.png", f"keyed {index}", index)
        library.add(path, "keys", f"{index}.png")
    driver = browser.driver
    driver.get(gallery.url + "/?container=keys")
    wait(lambda: len(cards(browser)) == PAGE)
    order = [int(card.get_attribute("data-id")) for card in cards(browser)]
    cards(browser)[0].click()
    wait(lambda: item_id(browser) == order[0])
    for key, expected in ((Keys.ARROW_RIGHT, 1), ("j", 2), ("k", 1), (Keys.ARROW_LEFT, 0)):
        press(browser, key)
        wait(lambda expected=expected: item_id(browser) == order[expected])
    press(browser, Keys.ESCAPE)
    wait(lambda: driver.current_url.endswith("/?container=keys"))
    wait(lambda: len(cards(browser)) == PAGE)
    last = cards(browser)[-1]
    driver.execute_script("arguments[0].scrollIntoView()", last)
    driver.execute_script("arguments[0].click()", last)
    wait(lambda: item_id(browser) == order[-1])
    press(browser, "j")
    wait(lambda: item_id(browser) not in (-1, order[-1]))
    beyond = item_id(browser)
    assert beyond not in order and library.row_id("keys", "1.png") == beyond
    assert driver.find_element(By.CSS_SELECTOR, "nav.steps a[rel=prev]").is_displayed()
