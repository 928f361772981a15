"""The keys of a `mirror` sink (README "Mirror"): a second copy of the library through
rclone."""

from __future__ import annotations

from forge_syncd.config.keys import Key

MIRROR = {
    "remote": Key(
        "rclone_remote",
        "rclone remote and folder the library is copied to",
        "nas:forge-media",
        required=True,
    ),
    "rclone_config": Key(
        "readable_file",
        "rclone's config file defining the remote (rclone config create ...)",
        "/etc/forge-sync/rclone.conf",
        required=True,
    ),
    "bwlimit": Key(
        "rate", "bandwidth limit of the copies", "10MiB/s", attr="bwlimit_bps", nullable=True
    ),
    "retry_max": Key(
        "duration",
        "longest wait before trying again after a failure",
        "5m",
        attr="retry_max_s",
    ),
}
