"""Bandwidth limits: `sync.bwlimit` (a rate, a timetable in rclone's form, or `auto`) and the
top-level `limits: {bwlimit}` that caps every container together. Transport-neutral: a
transport reads through a container's `Limiter` (`registry.py`) and may hand it round-trip
samples (`auto`); nothing here knows how bytes travel."""
