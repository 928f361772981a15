"""A file whose name is not UTF-8 (a hostile box's bytes): its row's `local_path` holds lone
surrogates; every page and API answer that carries it is still served (the byte shown as
U+FFFD), never a 500 (the Debian package's check in a booted Debian met this)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from tests.support.gallery import Gallery, Library, a1111_png


def test_a_name_that_is_not_utf8_is_served(
    library: Library, gallery: Gallery, tmp_path: Path
) -> None:
    """The search, the item, the grid and the item page answer 200 with a row named
    b"caf\\xe9.png" (Latin-1); its JSON is valid UTF-8 with U+FFFD for the byte."""
    source = a1111_png(tmp_path / "latin.png", "a latin-1 name", 5)
    exact = os.fsencode(library.media / "forge-a") + b"/caf\xe9-latin1.png"
    with open(exact, "wb") as target:
        target.write(source.read_bytes())
    library.sink.deliver(  # as the daemon says it: display names, the exact path in base64
        {
            "type": "file_synced",
            "container": "forge-a",
            "path": "caf\ufffd-latin1.png",
            "local_path": os.fsdecode(exact).encode("utf-8", "replace").decode(),
            "local_path_b64": base64.b64encode(exact).decode(),
            "size": source.stat().st_size,
            "mtime": "2026-11-02T10:00:00.000000Z",
            "sha256": hashlib.sha256(source.read_bytes()).hexdigest(),
        }
    )
    status, _, body = gallery.get("/api/search?q=latin&limit=5")
    assert status == 200, body[:300]
    (item,) = json.loads(body.decode("utf-8"))["items"]
    assert "\ufffd" in item["local_path"]
    status, _, body = gallery.get(f"/api/item/{item['id']}")
    assert status == 200 and "\ufffd" in json.loads(body.decode("utf-8"))["local_path"]
    for page in ("/", "/?q=latin", f"/item/{item['id']}"):
        status, _, body = gallery.get(page)
        assert status == 200, (page, body[:300])
        body.decode("utf-8")
