"""The library: what forge-syncd keeps (the manifest, local files, versions, modes)."""
