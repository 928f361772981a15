"""An OpenSSH client config read through paramiko's own parser (`SSHConfig`): the Host aliases
it names and what a lookup gives for each. `Match` blocks are cut out of the text first and
reported: paramiko's lookup would evaluate them, and `Match exec` runs a command."""

from __future__ import annotations

from typing import Any

import paramiko


class SshConfigError(Exception):
    """paramiko could not parse the text, or look a host up in it (the message is its own)."""


class Hosts:
    """A parsed ssh_config: its Host aliases, as paramiko lists them, and the lookup of one."""

    def __init__(self, config: paramiko.SSHConfig, aliases: list[str]) -> None:
        self._config = config
        self.aliases = aliases

    def lookup(self, alias: str) -> dict[str, Any]:
        """Return what paramiko's lookup gives for `alias` (`hostname`, `port`, `user`,
        `identityfile`...). Raise SshConfigError."""
        try:
            found: dict[str, Any] = self._config.lookup(alias)
        except Exception as exc:  # any parser error is the file's: one record, no traceback
            raise SshConfigError(str(exc)) from exc
        return found


def parse_hosts(text: str) -> tuple[Hosts, list[str]]:
    """Given ssh_config text, return its hosts and one warning per Match block cut out.
    Raise SshConfigError."""
    kept, warnings = without_match_blocks(text)
    try:
        config = paramiko.SSHConfig.from_text(kept)
        aliases = list(config.get_hostnames())
    except Exception as exc:  # as above
        raise SshConfigError(str(exc)) from exc
    return Hosts(config, aliases), warnings


def without_match_blocks(text: str) -> tuple[str, list[str]]:
    """Given ssh_config text, return it with every `Match` block blanked out (the Match
    line and the lines after it up to the next Host or Match line) and one warning per
    block. Lines are split and keywords read exactly as paramiko's parser does (on "\\n",
    stripped, its own SETTINGS_REGEX, lower-cased), so paramiko never sees a Match line."""
    kept: list[str] = []
    warnings: list[str] = []
    in_match = False
    for number, line in enumerate(text.split("\n"), start=1):
        setting = paramiko.SSHConfig.SETTINGS_REGEX.match(line.strip())
        keyword = setting.group(1).lower() if setting else ""
        if keyword in ("host", "match"):
            in_match = keyword == "match"
            if in_match:
                warnings.append(f"line {number}: Match block skipped (Match is never evaluated)")
        kept.append("" if in_match else line)  # blank, so that line numbers stay
    return "\n".join(kept), warnings
