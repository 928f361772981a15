"""Configuration: the schema, strict loading with file:line errors, kind presets."""

from forge_syncd.config.dropins import (
    admin_dropin_folder,
    dropin_folder,
    dropin_path,
    written_by_daemon,
)
from forge_syncd.config.loader import ConfigError, load_config
from forge_syncd.config.model import (
    CleanupConfig,
    Config,
    ContainerConfig,
    ControlConfig,
    LibraryConfig,
    LogConfig,
    MetricsConfig,
    Schedule,
    SinkConfig,
    SshConfig,
    SyncConfig,
    TransportKind,
)
from forge_syncd.config.summary import NO_CONTAINERS, summarize_config
from forge_syncd.config.validate import ConfigIssue

__all__ = [
    "NO_CONTAINERS",
    "CleanupConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ContainerConfig",
    "ControlConfig",
    "LibraryConfig",
    "LogConfig",
    "MetricsConfig",
    "Schedule",
    "SinkConfig",
    "SshConfig",
    "SyncConfig",
    "TransportKind",
    "admin_dropin_folder",
    "dropin_folder",
    "dropin_path",
    "load_config",
    "summarize_config",
    "written_by_daemon",
]
