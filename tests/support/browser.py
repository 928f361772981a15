"""A real browser for tests: Debian's Chromium driven by Selenium through chromedriver.

`Browser().start()` runs Debian's `chromium` through its `chromium-driver`
(/usr/bin/chromedriver; no browser or driver is downloaded: Selenium is given both paths)
headless (`--headless=new`), with `--no-sandbox` (the tests run as root), no GPU, `/dev/shm`
not used, a window of 1400x900 and a profile folder of its own under /tmp, removed by
`stop()`. `driver` is the Selenium WebDriver; `screenshot(path)` saves a PNG of the page and
returns its (width, height) read from the PNG header. `stop()` quits the driver, then kills by
PID any process still naming the profile folder (a renderer left behind) and removes it.

`browser_or_skip()` is what fixtures call: a started browser, or a skip with one line saying
what is missing (`apt-get install chromium chromium-driver`, `pip install selenium`).
Recipe: /work/shared/notes/docker-xfs-browser.md.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def missing_reason() -> str | None:
    """Return why no browser can start here (one line), or None."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            return f"{path} not found: apt-get install {package} (scripts/bootstrap.sh does)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install -e '.[test]'"
    return None


def png_size(data: bytes) -> tuple[int, int]:
    """Given PNG bytes, return (width, height) from its header. Raise ValueError if the
    bytes are not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


@dataclass
class Browser:
    """One headless Chromium with a profile of its own."""

    width: int = 1400
    height: int = 900
    profile: Path | None = None
    driver: Any = None  # selenium.webdriver.Chrome once started
    extra_args: list[str] = field(default_factory=list)

    def start(self) -> Browser:
        """Start chromedriver and Chromium; return self. Raise WebDriverException (from
        Selenium, with chromedriver's message) if it cannot."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="forge-chromium-", dir="/tmp"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            f"--user-data-dir={self.profile}",
            f"--window-size={self.width},{self.height}",
            *self.extra_args,
        ):
            options.add_argument(argument)
        service = Service(
            executable_path=CHROMEDRIVER, log_output=str(self.profile.with_suffix(".log"))
        )
        try:
            self.driver = webdriver.Chrome(options=options, service=service)
        except Exception:
            self.stop()
            raise
        return self

    def screenshot(self, path: Path) -> tuple[int, int]:
        """Save a PNG of the visible page at `path`; return its (width, height)."""
        data = self.driver.get_screenshot_as_png()
        path.write_bytes(data)
        return png_size(data)

    def leftover_processes(self) -> list[int]:
        """Return the PIDs of processes whose command line names the profile folder."""
        if self.profile is None:
            return []
        marker = str(self.profile).encode()
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and int(entry.name) != os.getpid():
                with contextlib.suppress(OSError):
                    if marker in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
        return found

    def stop(self) -> None:
        """Quit the browser, kill by PID what is left of it, remove its profile; idempotent."""
        if self.driver is not None:
            with contextlib.suppress(Exception):
                self.driver.quit()
            self.driver = None
        for pid in self.leftover_processes():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.profile is not None:
            shutil.rmtree(self.profile, ignore_errors=True)
            with contextlib.suppress(FileNotFoundError):
                self.profile.with_suffix(".log").unlink()


def browser_or_skip() -> Browser:
    """Return a started browser, or skip the calling test saying why not."""
    reason = missing_reason()
    if reason is None:
        try:
            return Browser().start()
        except Exception as exc:  # Selenium raises its own kinds; any means no browser
            reason = f"Chromium did not start: {str(exc).strip().splitlines()[0]}"
    pytest.skip(f"browser tier skipped: {reason}")
    raise AssertionError("unreachable")
