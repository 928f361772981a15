"""What each container `kind` implies for `root` and `folders`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Preset:
    root: str | None  # None: the config must give one
    folders: tuple[str, ...]  # empty: the whole root


PRESETS = {
    "forge": Preset(
        "/workspace/stable-diffusion-webui/outputs",
        ("txt2img-images", "img2img-images", "extras-images", "txt2img-grids", "img2img-grids"),
    ),
    "comfyui": Preset("/workspace/ComfyUI/output", ()),
    "generic": Preset(None, ()),
}
