"""`Key`: how the config schema (`schema.py`) describes one key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Key:
    """One config key. `type` is one of the checks in `validate.CHECKS` or
    `validate.KEYED_CHECKS`, `map`, `list` or `sink`."""

    type: str
    description: str
    example: Any = None
    attr: str | None = None
    required: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()
    minimum: int | None = None
    maximum: int | None = None
    keys: dict[str, Key] = field(default_factory=dict)  # for type "map"
    item: Key | None = None  # for type "list"
