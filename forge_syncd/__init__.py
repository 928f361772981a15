"""forge-syncd: pull generated media from Forge / ComfyUI containers over SSH, safely."""

__version__ = "0.1.0"
