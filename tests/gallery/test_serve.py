"""forge-sync-gallery's start: the `gallery:` section's errors (file, line, key, exit 2),
auth required off loopback, basic auth enforced, a missing catalog said plainly."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

from tests.support.gallery import BIN, Gallery, Library
from tests.support.sshd import free_port


@pytest.fixture
def library(tmp_path: Path) -> Library:
    made = Library(tmp_path)
    made.add(
        Path(__file__).parent.parent / "fixtures" / "real-media" / "img2img_cropped.png",
        "a",
        "x.png",
    )
    return made


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "forge-sync-gallery"), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def password_file(tmp_path: Path, mode: int = 0o600) -> Path:
    path = tmp_path / "gallery.password"
    path.write_text("s3cret pass\n")
    path.chmod(mode)
    return path


def test_off_loopback_without_auth_refuses_to_start(library: Library) -> None:
    """listen on 0.0.0.0 without auth: exit 2, the file, the line and gallery.listen named,
    nothing listens."""
    port = free_port()
    config = library.config(f"gallery:\n  thumbnails: {library.root}/t\n  listen: 0.0.0.0:{port}\n")
    result = run(config)
    assert result.returncode == 2
    assert f"{config}:9: gallery.listen: 0.0.0.0 is not a loopback address" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        (
            "gallery:\n  listn: 127.0.0.1:1\n",
            ":8: gallery.listn: unknown key (did you mean 'listen'?)",
        ),
        ("gallery:\n  catalog: nope\n", ":8: gallery.catalog: no sink 'nope' (catalogs: catalog)"),
        ("gallery:\n  thumbnail_size: 10\n", ":8: gallery.thumbnail_size: must be at least 64"),
        ("gallery:\n  auth: {user: a}\n", "gallery.auth.password_file: required key is missing"),
        ("gallery: [1]\n", "gallery: expected a mapping"),
    ],
)
def test_bad_gallery_section_is_a_clear_error(
    library: Library, section: str, expected: str
) -> None:
    """Each mistake in `gallery:` exits 2 with file:line: key: what is wrong."""
    config = library.config(section)
    result = run(config)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert result.stderr.startswith(str(config)) and "Traceback" not in result.stderr


def test_loose_password_file_is_refused(library: Library, tmp_path: Path) -> None:
    """A password file others can read is refused (exit 2), its content never shown."""
    loose = password_file(tmp_path, 0o644)
    config = library.config(f"gallery:\n  auth: {{user: alice, password_file: {loose}}}\n")
    result = run(config)
    assert result.returncode == 2 and "gallery.auth.password_file" in result.stderr
    assert "s3cret" not in result.stderr


def test_missing_catalog_is_said(tmp_path: Path) -> None:
    """A catalog the daemon has not made yet: exit 1 and a sentence, no traceback."""
    made = Library.__new__(Library)
    made.root, made.media, made.catalog = tmp_path, tmp_path / "media", tmp_path / "none.sqlite"
    made.media.mkdir()
    result = run(made.config(f"gallery: {{thumbnails: {tmp_path}/t}}\n"))
    assert result.returncode == 1
    assert "no catalog at" in result.stderr and "Traceback" not in result.stderr


def test_basic_auth_is_enforced(library: Library, tmp_path: Path) -> None:
    """With auth set, every route (pages, API, thumbnails, files, metrics) answers 401 with
    a Basic challenge without the right user and password, and 200 with them."""
    secret = password_file(tmp_path)
    server = Gallery(
        library, tmp_path / "thumbs", f", auth: {{user: alice, password_file: {secret}}}"
    ).start()
    try:
        good = "Basic " + base64.b64encode(b"alice:s3cret pass").decode()
        wrong = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        for path in ("/", "/api/search", "/item/1", "/file/1", "/metrics", "/events"):
            status, headers, _ = server.get(path)
            assert status == 401 and headers["www-authenticate"].startswith("Basic realm=")
            assert server.get(path, {"Authorization": wrong})[0] == 401
            assert server.get(path, {"Authorization": "Basic !!!"})[0] == 401
            if path != "/events":
                assert server.get(path, {"Authorization": good})[0] == 200, path
    finally:
        server.stop()
