"""Configuration: the schema, strict loading with file:line errors, kind presets."""

from forge_syncd.config.loader import ConfigError, load_config
from forge_syncd.config.model import (
    CleanupConfig,
    Config,
    ContainerConfig,
    ControlConfig,
    LogConfig,
    MetricsConfig,
    Schedule,
    SinkConfig,
    SshConfig,
    SyncConfig,
)
from forge_syncd.config.summary import summarize_config
from forge_syncd.config.validate import ConfigIssue

__all__ = [
    "CleanupConfig",
    "Config",
    "ConfigError",
    "ConfigIssue",
    "ContainerConfig",
    "ControlConfig",
    "LogConfig",
    "MetricsConfig",
    "Schedule",
    "SinkConfig",
    "SshConfig",
    "SyncConfig",
    "load_config",
    "summarize_config",
]
