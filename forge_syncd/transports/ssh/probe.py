"""What the remote offers, asked once per connection in a single command."""

from __future__ import annotations

import time

from forge_syncd.remote.errors import RemoteError
from forge_syncd.transports.shell.probe import (
    PROBE_OUTPUT,
    PROBE_SCRIPT,
    Capabilities,
    split_probe,
    with_listing,
)
from forge_syncd.transports.shell.result import OutputTooLarge, ScriptResult
from forge_syncd.transports.ssh.connection import Connection, sh_command


def probe(
    connection: Connection, listing_script: str | None = None, max_output: int = 512 * 1024**2
) -> tuple[Capabilities, ScriptResult | None]:
    """Return what the remote offers and, where `listing_script` is given and the remote
    has GNU find, that script's result from the same command: the first listing after a
    connect costs no command of its own (over a WAN, three round trips and a shell less).
    A remote without a shell gets plain SFTP (and no listing)."""
    started = time.time()
    script = with_listing(PROBE_SCRIPT, listing_script)
    try:
        result = connection.run(
            sh_command(script),
            # A listing may go quiet for a while on a slow disk: the connection's own limit.
            idle_timeout=None if listing_script is not None else 30,
            max_output=max_output + PROBE_OUTPUT,
        )
    except OutputTooLarge:
        # The listing is past its limit: probe alone; the listing fails on its own later,
        # with the limit named.
        return probe(connection)[0], None
    except RemoteError as exc:
        if not connection.alive:
            raise
        return Capabilities(shell=False, said=str(exc)), None
    capabilities, _answers, listing = split_probe(result, started)
    return capabilities, listing
