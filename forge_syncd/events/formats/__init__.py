"""Readers of generation metadata, one module per container and per front end.

Containers (`png`, `stealth`, `jpeg`, `exif`, `webp`, `mp4`, `matroska`, `sidecar`) find the
embedded texts, the image size and, for video, duration and frame rate; front ends (`a1111`,
`comfy`, `invokeai`, `fooocus`, `swarmui`, `novelai`) turn those texts into a
`GenerationInfo`. `forge_syncd.events.metadata` picks the readers for a file. Every reader runs
in time linear in what it reads and holds to the file's `Meter` (see budget.py).
"""
