"""Implementations of the transport interface (`forge_syncd/remote/transport.py`): how the
bytes of a container reach the library."""
