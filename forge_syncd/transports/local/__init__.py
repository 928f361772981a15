"""The local transport: a folder on this machine (`transport: local`), with every guarantee
of the SSH transport."""
