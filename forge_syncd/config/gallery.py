"""The `gallery:` section, as `forge-sync-gallery` uses it (SPEC round 3 "Gallery").

The daemon's `load_config` accepts the section as it is (`schema.TOP`: a mapping);
`load_gallery_config` checks its keys (GALLERY, unknown keys rejected) and what only the
gallery needs: the catalog sink it names exists and is one it can read (`catalog`: its
SQLite file; `postgres`: its DSN), and `auth` is set
when `listen` is not a loopback address. Every problem is a ConfigError naming the file,
line and key, as the daemon's are.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

from forge_syncd.config.loader import ConfigError, load_config
from forge_syncd.config.model import Config
from forge_syncd.config.schema import Key
from forge_syncd.config.validate import Checked, ConfigIssue, Issues, check_map
from forge_syncd.config.yamlnodes import LineDict, YamlError, parse

DEFAULT_LISTEN = ("127.0.0.1", 9722)
DEFAULT_THUMBNAILS = Path("/var/cache/forge-sync/thumbnails")
DEFAULT_THUMBNAIL_SIZE = 512
READABLE_SINKS = ("catalog", "postgres")

GALLERY = {
    "listen": Key("listen", "host:port of the gallery", "127.0.0.1:9722"),
    "catalog": Key("name", "the name of the catalog or postgres sink it shows", "catalog"),
    "thumbnails": Key("abspath", "thumbnail cache folder", "/var/cache/forge-sync/thumbnails"),
    "thumbnail_size": Key("int", "longest side of a thumbnail", 512, minimum=64, maximum=2048),
    "auth": Key(
        "map",
        "HTTP basic auth; null: none (refused off loopback)",
        keys={
            "user": Key("str", "the user name", "alice", required=True),
            "password_file": Key(
                "secret_file", "a private file holding the password", "/etc/x", required=True
            ),
        },
        nullable=True,
    ),
}


@dataclass(frozen=True)
class GalleryAuth:
    user: str
    password_file: Path


@dataclass(frozen=True)
class GalleryConfig:
    media_root: Path
    catalog_path: Path | None = None  # the `catalog` sink's SQLite file, or
    catalog_dsn: str | None = None  # the `postgres` sink's database
    listen: tuple[str, int] = DEFAULT_LISTEN
    thumbnails: Path = DEFAULT_THUMBNAILS
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE
    auth: GalleryAuth | None = None


def is_loopback(host: str) -> bool:
    """Whether `host` (a listen address) is reachable from this machine alone."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


def load_gallery_config(path: Path) -> tuple[Config, GalleryConfig]:
    """Given the config file, return the daemon's Config and the gallery's (the section
    is checked here: the daemon takes it as it is). Raise
    ConfigError (every problem: file, line, key) when either cannot be used."""
    config = load_config(path)
    try:
        document = parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, YamlError) as exc:  # load_config read it just now
        issue = ConfigIssue(str(path), 1, "(file)", f"cannot read the config: {exc}")
        raise ConfigError([issue]) from None
    issues = Issues(str(path))
    section = document.get("gallery") if isinstance(document, LineDict) else None
    line = document.value_lines.get("gallery", 1) if isinstance(document, LineDict) else 1
    checked: dict[str, Checked] = {}
    if isinstance(section, LineDict):
        checked = check_map(section, GALLERY, "gallery", issues)

    def value(key: str, default: object) -> object:
        return checked[key].value if key in checked else default

    def line_of(key: str) -> int:
        return checked[key].line if key in checked else line

    catalog_path, catalog_dsn = _catalog_source(
        config, str(value("catalog", "catalog")), line_of("catalog"), issues
    )
    listen = value("listen", DEFAULT_LISTEN)
    assert isinstance(listen, tuple)
    auth_value = value("auth", None)
    auth = None
    if isinstance(auth_value, dict):
        if "user" in auth_value and "password_file" in auth_value:  # else: an issue says why
            auth = GalleryAuth(auth_value["user"].value, auth_value["password_file"].value)
    elif not is_loopback(listen[0]):
        issues.add(
            line_of("listen"),
            "gallery.listen",
            f"{listen[0]} is not a loopback address: set gallery.auth (user, password_file)",
        )
    if issues:
        raise ConfigError(issues)
    size = value("thumbnail_size", DEFAULT_THUMBNAIL_SIZE)
    assert isinstance(size, int)
    gallery = GalleryConfig(
        media_root=config.media_root,
        catalog_path=catalog_path,
        catalog_dsn=catalog_dsn,
        listen=(str(listen[0]), int(listen[1])),
        thumbnails=Path(str(value("thumbnails", DEFAULT_THUMBNAILS))),
        thumbnail_size=size,
        auth=auth,
    )
    return config, gallery


def _catalog_source(
    config: Config, name: str, line: int, issues: Issues
) -> tuple[Path | None, str | None]:
    """The file of the `catalog` sink `name`, or the DSN of the `postgres` sink `name` (an
    issue when there is no such sink, or it keeps no catalog)."""
    sink = {sink.name: sink for sink in config.ingest}.get(name)
    if sink is None:
        readable = (s.name for s in config.ingest if s.type in READABLE_SINKS)
        known = ", ".join(sorted(readable)) or "none"
        issues.add(line, "gallery.catalog", f"no sink {name!r} (catalogs: {known})")
    elif sink.type not in READABLE_SINKS:
        issues.add(line, "gallery.catalog", f"sink {name!r} is a {sink.type} sink (not a catalog)")
    elif sink.type == "postgres":
        return None, str(sink.options["dsn"])
    else:
        return Path(sink.options["path"]), None
    return None, None
