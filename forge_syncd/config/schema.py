"""The config schema, as data: every key with its type, a description and an example.

Unknown keys are rejected. `attr` names the dataclass field a key fills when it differs
from the key (`connect_timeout` -> `connect_timeout_s`). Defaults live in the dataclasses
of `model.py`; the descriptions here are what `etc/forge-sync.yaml` documents.
"""

from __future__ import annotations

from typing import Any, get_args

from forge_syncd.config.bwlimit import AUTO_DELAY_HELP, BWLIMIT_HELP, CAP_HELP
from forge_syncd.config.keys import Key as Key  # re-exported: where callers find it
from forge_syncd.config.model import Kind, TransportKind
from forge_syncd.config.schema_mirror import MIRROR


def _strings(description: str, example: list[str]) -> Key:
    return Key("list", description, example, item=Key("glob", "a shell glob", "*.png"))


SSH = {
    "user": Key("str", "remote user", "root"),
    "port": Key("int", "SSH port", 2222, minimum=1, maximum=65535),
    "identity_file": Key("path", "private key for public-key auth", "/etc/forge-sync/id_ed25519"),
    "known_hosts": Key("path", "OpenSSH known_hosts file", "/etc/forge-sync/known_hosts"),
    "host_key_policy": Key(
        "enum",
        "strict: unknown or changed key refused; accept-new: learn unknown keys",
        "strict",
        choices=("strict", "accept-new"),
    ),
    "connect_timeout": Key(
        "duration", "TCP + SSH handshake timeout", "15s", attr="connect_timeout_s"
    ),
    "keepalive": Key(
        "duration", "keepalive interval on the open connection", "30s", attr="keepalive_s"
    ),
}

SYNC = {
    "interval": Key("duration", "time between syncs (or use schedule)", "5m"),
    "schedule": Key("cron", "crontab line (or use interval)", "*/5 * * * *"),
    "include": _strings("file name globs to sync", ["*.png", "*.mp4"]),
    "exclude": _strings("globs never synced; wins over include", ["*tmp*"]),
    "settle": Key("duration", "skip files modified less than this long ago", "5s", attr="settle_s"),
    "transfers": Key("int", "parallel file transfers per container", 4, minimum=1, maximum=8),
    "connections": Key(
        "connections", "SSH connections a fetch may use: auto, 1-8", "auto", minimum=1, maximum=8
    ),
    "verify": Key(
        "enum", "size, or sha256 computed on both ends", "size", choices=("size", "sha256")
    ),
    "bwlimit": Key("bwlimit", BWLIMIT_HELP, "08:00,5MiB/s 23:00,off", nullable=True),
    "auto_delay": Key("delay", AUTO_DELAY_HELP, "25ms", attr="auto_delay_s"),
    "max_file_size": Key("size", "larger remote files are skipped and logged", "50GiB"),
    "watch": Key(
        "bool",
        "live mode: a remote watcher triggers a sync seconds after a file is written",
        True,
    ),
    "max_listing_files": Key(
        "int",
        "a listing with more files is refused (bounds memory: ~150 B a file)",
        2_000_000,
        minimum=1,
    ),
    "max_listing_size": Key("size", "a listing whose raw output is larger is refused", "512MiB"),
    "keep_versions": Key(
        "keep",
        "earlier versions of a library file (name reused, file changed): all, a duration, 0",
        "all",
    ),
    "on_local_delete": Key(
        "enum",
        "a synced file deleted from the library: refetch, or forget (never fetched again)",
        "refetch",
        choices=("refetch", "forget"),
    ),
    "dedupe_min_size": Key("size", "larger files are hashed on the box first", "8MiB"),
}

CLEANUP = {
    "enabled": Key("bool", "purge old media that is safely copied", False),
    "interval": Key("duration", "time between cleanups (or use schedule)", "1h"),
    "schedule": Key("cron", "crontab line (or use interval)", "0 * * * *"),
    "older_than": Key(
        "duration", "by the remote file's modification time", "24h", attr="older_than_s"
    ),
    "dry_run": Key("bool", "list what would be deleted, delete nothing", False),
    "preserve": _strings("globs never deleted", ["*favorite*", "keep/**"]),
    "require_mirror": Key(
        "name",
        "a mirror sink: a file is purged only once that mirror holds it, verified",
        "nas",
        nullable=True,
    ),
}

SECTIONS = {
    "ssh": Key("map", "SSH connection", keys=SSH),
    "sync": Key("map", "what and when to sync", keys=SYNC),
    "cleanup": Key("map", "purging old media from the container", keys=CLEANUP),
}

# How a container is reached; one SPEC names that this version lacks: TRANSPORTS_LATER.
TRANSPORTS: tuple[str, ...] = get_args(TransportKind)
TRANSPORTS_LATER: tuple[str, ...] = ()
DOCKER = {  # `docker:` (transport docker only: `config/transports.py`)
    "host": Key(
        "docker_host", "unix:///path or ssh://[user@]host[:port]", "unix:///run/docker.sock"
    ),
    "user": Key("str", "who the scripts run as in the container", "root"),
}
# What a container runs (it gives the defaults of root and folders): one list, model.Kind.
KINDS: tuple[str, ...] = get_args(Kind)
DEDUPE: tuple[str, ...] = ("auto", "hardlink", "off")  # `library.dedupe`: model.Dedupe

CONTAINER = {
    "name": Key("name", "unique; also the local folder name", "forge-a", required=True),
    "transport": Key(
        "transport",
        "how the container is reached: ssh, local (a folder of this machine: root) or docker",
        "ssh",
        choices=TRANSPORTS,
    ),
    "kind": Key(
        "enum",
        "gives defaults for root and folders",
        "forge",
        required=True,
        choices=KINDS,
    ),
    # Required for ssh only (`config/transports.py`).
    "host": Key("host", "address or host name (transport ssh)", "10.0.78.108"),
    "root": Key("abspath", "the container's output folder", "/workspace/ComfyUI/output"),
    "folders": Key(
        "list",
        "folders under root to sync; [] = the whole root",
        [],
        item=Key("relpath", "a folder under root", "txt2img-images"),
    ),
    "container": Key("str", "transport docker: the container (default: name)", "comfyui"),
    "docker": Key("map", "transport docker: the Docker engine", keys=DOCKER),
    **SECTIONS,
}

# A discovery source: where containers are found, and container keys applied to each.
DISCOVER = {
    "type": Key(
        "enum",
        "ssh_config (an OpenSSH client config), command (prints JSON) or docker (labels)",
        "ssh_config",
        required=True,
        choices=("ssh_config", "command", "docker"),
    ),
    "path": Key("abspath", "ssh_config: the client config file", "/etc/forge-sync/ssh_config"),
    "hosts": _strings("ssh_config: Host aliases taken (globs)", ["vast-*"]),
    "command": Key(
        "list",
        "command: argv of a program printing a JSON array of container entries",
        ["/usr/local/bin/list-boxes"],
        item=Key("str", "one argument", "--json"),
    ),
    "host": DOCKER["host"],  # docker: the engine
    "label": Key("str", "docker: the label to look for (its value: the kind)", "forge-sync.kind"),
    "interval": Key("duration", "how often the source is read again", "1m", attr="interval_s"),
    "kind": Key(
        "enum",
        "kind of every container found (an entry may set its own)",
        "comfyui",
        choices=KINDS,
    ),
    "root": CONTAINER["root"],
    "folders": CONTAINER["folders"],
    **SECTIONS,
}

SINK_COMMON = {
    "name": Key("name", "unique sink name", "archive", required=True),
    "type": Key(
        "enum",
        "sink type",
        "jsonl",
        required=True,
        choices=(
            "jsonl", "exec", "webhook", "catalog", "postgres", "python",
            "ntfy", "discord", "telegram", "gotify", "mirror",
        ),
    ),
}  # fmt: skip

# What every notification sink (ntfy, discord, telegram, gotify) takes besides its own keys.
NOTIFY_KINDS = ("landed", "failing", "recovered", "at_risk", "drained")
NOTIFY_COMMON = {
    "when": Key(
        "list",
        "what to say: landed (a run landed files), failing and recovered (once each per"
        " container), at_risk (media only on a container past at_risk_after), drained"
        " (a drain's verdict); default all",
        ["landed", "failing", "recovered", "at_risk", "drained"],
        item=Key("enum", "one of them", "landed", choices=NOTIFY_KINDS),
    ),
    "min_interval": Key(
        "duration",
        "landed messages at most this often; runs landing meanwhile join the next one",
        "5m",
        attr="min_interval_s",
    ),
    "failing_after": Key(
        "int", "failed syncs in a row that make a container failing", 2, minimum=1
    ),
    "at_risk_after": Key(
        "duration",
        "media only on a container is said once its oldest file is this old",
        "30m",
        attr="at_risk_after_s",
    ),
    "gallery_url": Key(
        "url", "the gallery as readers reach it: messages link to it", "https://media.example/"
    ),
    "attach": Key("bool", "attach the first image where the service takes one", True),
    "prompt": Key("bool", "say the attached image's prompt", True),
    "timeout": Key("duration", "per request", "10s", attr="timeout_s"),
}

SINKS = {
    "jsonl": {
        "path": Key(
            "abspath", "file events are appended to", "/var/lib/forge-sync/e.jsonl", required=True
        )
    },
    "exec": {
        "command": Key(
            "list",
            "argv; the event JSON arrives on stdin",
            ["/usr/local/bin/x"],
            required=True,
            item=Key("str", "an argument", "x"),
        ),
        "timeout": Key("duration", "per event", "30s", attr="timeout_s"),
    },
    "webhook": {
        "url": Key(
            "url", "POST target; 2xx = delivered", "http://127.0.0.1:8080/media", required=True
        ),
        "timeout": Key("duration", "per request", "10s", attr="timeout_s"),
    },
    "catalog": {
        "path": Key(
            "abspath", "SQLite media catalog", "/var/lib/forge-sync/c.sqlite", required=True
        )
    },
    "postgres": {
        "dsn": Key(
            "str",
            "libpq connection string or URI of the catalog database (many daemons may share it)",
            "postgresql://forge@db.example/media",
            required=True,
        )
    },
    "python": {
        "entry_point": Key(
            "str", "name in entry point group forge_syncd.sinks", "mysink", required=True
        ),
        "options": Key("free", "passed to the sink", {}),
    },
    "ntfy": {
        "url": Key("url", "the topic's URL", "https://ntfy.sh/forge-sync-a8f3", required=True),
        "token_file": Key(
            "secret_file", "file holding an access token (Bearer)", "/etc/forge-sync/ntfy.token"
        ),
        **NOTIFY_COMMON,
    },
    "discord": {
        "webhook_url_file": Key(
            "secret_file",
            "file holding the webhook's URL (it holds its token)",
            "/etc/forge-sync/discord.url",
            required=True,
        ),
        "username": Key("str", "the name messages appear under", "forge-sync"),
        **NOTIFY_COMMON,
    },
    "telegram": {
        "bot_token_file": Key(
            "secret_file",
            "file holding the bot's token",
            "/etc/forge-sync/telegram.token",
            required=True,
        ),
        "chat_id": Key("chat_id", "the chat messages go to", "12345", required=True),
        "api_url": Key("url", "the Bot API server", "https://api.telegram.org"),
        **NOTIFY_COMMON,
    },
    "gotify": {
        "url": Key("url", "the Gotify server", "https://gotify.example", required=True),
        "token_file": Key(
            "secret_file",
            "file holding the application's token",
            "/etc/forge-sync/gotify.token",
            required=True,
        ),
        **NOTIFY_COMMON,
    },
    "mirror": MIRROR,
}
SINK_DEFAULTS: dict[str, dict[str, Any]] = {
    "exec": {"timeout_s": 30.0},
    "webhook": {"timeout_s": 10.0},
    "python": {"options": {}},
}

METRICS_LISTEN = Key(
    "listen", "host:port of /metrics; null disables", "127.0.0.1:9721", nullable=True
)
TOP = {
    "media_root": Key(
        "abspath",
        "where files land: <media_root>/<container>/<path>",
        "/srv/forge-media",
        required=True,
    ),
    "state_dir": Key("abspath", "manifest.sqlite and other durable state", "/var/lib/forge-sync"),
    "log": Key(
        "map",
        "logging",
        keys={
            "level": Key(
                "enum", "minimum level", "info", choices=("debug", "info", "warning", "error")
            ),
            "file": Key(
                "abspath",
                "JSON lines log; reopened on SIGHUP",
                "/var/log/forge-sync/x.jsonl",
                nullable=True,
            ),
        },
    ),
    "control": Key(
        "map",
        "control socket",
        keys={
            "socket": Key(
                "abspath", "Unix socket for forge-syncctl", "/run/forge-sync/control.sock"
            ),
            "group": Key(
                "group",
                "the socket's group: its members may use forge-syncctl; null: the daemon's",
                "forge-syncctl",
                nullable=True,
            ),
        },
    ),
    "library": Key(
        "map",
        "who can read the library: modes and group of what the daemon creates there",
        keys={
            "group": Key(
                "group",
                "group of every library folder and file (folders setgid); null: the daemon's",
                "media",
                nullable=True,
            ),
            "file_mode": Key("file_mode", "mode of every file landed, an octal string", "0640"),
            "dir_mode": Key("dir_mode", "mode of every folder created, an octal string", "2750"),
            "dedupe": Key("dedupe", "identical bytes stored once", "auto", choices=DEDUPE),
        },
    ),
    "metrics": Key("map", "Prometheus endpoint", keys={"listen": METRICS_LISTEN}),
    "limits": Key(
        "map",
        "limits on all containers together",
        keys={"bwlimit": Key("bwlimit_cap", CAP_HELP, "50MiB/s", nullable=True)},
    ),
    "defaults": Key("map", "ssh/sync/cleanup settings for every container", keys=SECTIONS),
    "discover": Key(
        "list",
        "where more containers are found (re-read on their interval and on reload)",
        item=Key("map", "a discovery source", keys=DISCOVER),
        nullable=True,
    ),
    "containers": Key(
        "list",
        "the containers to sync (none is fine: add them later)",
        item=Key("container", "a container", keys=CONTAINER),
        nullable=True,
    ),
    "ingest": Key("list", "event sinks", item=Key("sink", "a sink")),
    "gallery": Key("free", "the web gallery: checked by forge-sync-gallery", nullable=True),
}

# What a drop-in (`forge-sync.d/*.yaml`, `<state_dir>/containers.d/*.yaml`) may hold.
DROPIN = {name: TOP[name] for name in ("containers", "discover")}
