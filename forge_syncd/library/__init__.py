"""What we keep: the library's files and their state (the manifest, copies, earlier versions,
local files, modes, the outbox's event records). Nothing here speaks to a transport or runs a
job."""
