"""The SSH transport: paramiko, the kept-open connection and its shells, host keys, and the
SSH side of listing, hashing, fetching (tar stream or SFTP), deleting and watching."""
