"""`forge-sync-gallery [--config PATH]`: the gallery process (SPEC round 3 "Gallery").

Exit 2 for a config it cannot use (file, line, key, as the daemon says it), 1 when the
catalog or the thumbnail folder cannot be used or the web dependencies are missing (the
`gallery` extra). A background thread makes the thumbnails of rows as they are added.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from forge_syncd import __version__
from forge_syncd.config import ConfigError
from forge_syncd.config.gallery import GalleryConfig, load_gallery_config

if TYPE_CHECKING:
    from forge_syncd.gallery.source import CatalogReader

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FOLLOW_S = 2.0


def follow(gallery: object, stop: threading.Event) -> None:
    """Make the thumbnail of every row added or changed from now on (older ones are made
    when a page asks), one at a time, at a lower priority; errors wait for the next round."""
    from forge_syncd.gallery.app import Gallery, thumbnail_for
    from forge_syncd.gallery.thumbs import lower_priority

    assert isinstance(gallery, Gallery)
    lower_priority()
    try:
        gallery.catalog.facets()  # counted once now, not on the first page
    except Exception as exc:  # the first page counts them then
        print(f"forge-sync-gallery: facets: {exc}", file=sys.stderr)
    last = gallery.catalog.last_change()
    while not stop.wait(FOLLOW_S):
        try:
            for row in gallery.catalog.changed_after(last, 100):
                last = max(last, int(row["change"]))
                thumbnail_for(gallery, row)
        except Exception as exc:
            print(f"forge-sync-gallery: thumbnail worker: {exc}", file=sys.stderr)


def open_reader(config: GalleryConfig) -> CatalogReader:
    """The reader of the catalog `gallery.catalog` names: its SQLite file, or its PostgreSQL
    database. Raise CatalogUnavailable (saying why) when it cannot be read now."""
    if config.catalog_dsn is not None:
        from forge_syncd.gallery.pg_catalog import PostgresCatalog

        return PostgresCatalog(config.catalog_dsn)
    from forge_syncd.gallery.catalog import SqliteCatalog

    assert config.catalog_path is not None
    return SqliteCatalog(config.catalog_path)


def password(config: GalleryConfig) -> tuple[str, str] | None:
    if config.auth is None:
        return None
    text = config.auth.password_file.read_text(encoding="utf-8").rstrip("\r\n")
    if not text:
        raise ValueError(f"{config.auth.password_file} is empty")
    return config.auth.user, text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="forge-sync-gallery", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=Path("/etc/forge-sync.yaml"))
    parser.add_argument("--version", action="version", version=f"forge-sync-gallery {__version__}")
    args = parser.parse_args(argv)
    try:
        _, config = load_gallery_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    try:
        import uvicorn  # noqa: F401 (here: a clear message when the extra is missing)

        from forge_syncd.gallery.source import CatalogUnavailable
    except ImportError as exc:
        print(
            f"forge-sync-gallery: {exc.name} is missing: pip install 'forge-syncd[gallery]'",
            file=sys.stderr,
        )
        return EXIT_FAILED
    try:
        auth = password(config)
        config.thumbnails.mkdir(parents=True, exist_ok=True)
        if not os.access(config.thumbnails, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write thumbnails into {config.thumbnails}")
        catalog = open_reader(config)
    except (OSError, ValueError, CatalogUnavailable) as exc:
        print(f"forge-sync-gallery: {exc}", file=sys.stderr)
        return EXIT_FAILED
    server = _server(config, catalog, auth, stop := threading.Event())
    host, port = config.listen
    shown = f"[{host}]" if ":" in host else host
    print(
        f"forge-sync-gallery: serving http://{shown}:{port}/ ({time.strftime('%H:%M:%S')})",
        file=sys.stderr,
        flush=True,
    )
    server.run()
    stop.set()
    return EXIT_OK if server.started else EXIT_FAILED


def _server(
    config: GalleryConfig, catalog: Any, auth: tuple[str, str] | None, stop: threading.Event
) -> Any:
    """The uvicorn server of the gallery's app; starts the thumbnail worker."""
    import uvicorn

    from forge_syncd.gallery.app import Gallery, build_app
    from forge_syncd.gallery.thumbs import Thumbnails
    from forge_syncd.gallery.web import Guard, Metrics

    metrics = Metrics()
    thumbs = Thumbnails(config.thumbnails, config.thumbnail_size)
    thumbs.made = metrics.thumbnail_made
    gallery = Gallery(catalog, thumbs, config.media_root)
    threading.Thread(target=follow, args=(gallery, stop), name="thumbnails", daemon=True).start()
    return uvicorn.Server(
        uvicorn.Config(
            Guard(build_app(gallery), metrics, auth),
            host=config.listen[0],
            port=config.listen[1],
            log_level="warning",
            access_log=False,
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
            lifespan="off",
        )
    )


if __name__ == "__main__":
    sys.exit(main())
