"""What runs on a box: the output folders of the known front ends, found by one remote
command, and which of them `add` picks.

The remote script is fixed text: the folders it looks under are ours (quoted), and what it
reads on the box (the login user's HOME, a process's arguments and working folder) only ever
lives in shell variables, always quoted, never in the text of a command. Everything it
prints comes back hex-encoded, one record a line, bounded in size, and is parsed here as
hostile: a record that does not parse, a path that is not absolute UTF-8 text or holds a
control character, is dropped (and said so).
"""

from __future__ import annotations

import os
import shlex
from dataclasses import asdict, dataclass, field
from typing import Any

from forge_syncd.config.presets import PRESETS

# Where RunPod and vast.ai images put their apps (`/workspace`), Docker images at the root,
# and bare installs in the login user's home (the script adds `$HOME` itself).
BASES = ("/workspace", "/")
# The test suite points the probe at temporary folders instead of `/workspace` and `/`
# (colon-separated absolute paths); nothing else should set it.
TEST_BASES_ENV = "FORGE_SYNCD_TEST_PROBE_BASES"


@dataclass(frozen=True)
class FrontEnd:
    """A front end's output folder, relative to its base, and the config kind that syncs
    it (the kinds without a preset sync the whole folder as `generic`)."""

    folder: str
    app: str
    kind: str


FRONT_ENDS = (
    FrontEnd("stable-diffusion-webui/outputs", "Forge/A1111", "forge"),
    FrontEnd("stable-diffusion-webui-forge/outputs", "Forge", "forge"),
    FrontEnd("ComfyUI/output", "ComfyUI", "comfyui"),
    FrontEnd("invokeai/outputs/images", "InvokeAI", "generic"),
    FrontEnd("Fooocus/outputs", "Fooocus", "generic"),
    FrontEnd("SwarmUI/Output", "SwarmUI", "generic"),
)
BY_FOLDER = {f.folder: f for f in FRONT_ENDS}
COMFYUI_ARG = "--output-directory"

MAX_FILES = 100_000  # counted per folder; more is shown as "100000+"
MAX_CMDLINE = 32 * 1024  # bytes of a process's arguments read
MAX_PROCESSES = 16  # processes with --output-directory looked at
MAX_PATH = 4096
FIND_TIMEOUT_S = 20
# What the probe may print: 16 processes' arguments hex-encoded, and the folders.
MAX_OUTPUT = 2 * 1024 * 1024

SCRIPT = r"""
hx() { od -An -v -tx1 | tr -d ' \n'; }
lim() { if command -v timeout >/dev/null 2>&1; then timeout @T@ "$@"; else "$@"; fi; }
count() { lim find "$1" -type f -printf '%s\n' 2>/dev/null | head -n @N@ \
  | awk '{n++; s+=$1} END {printf "%.0f %.0f\n", n, s}'; }
ino() { stat -L -c '%d:%i' "$1" 2>/dev/null || echo -; }
printf 'home %s\n' "$(printf '%s' "${HOME:-}" | head -c @P@ | hx)"
for b in @BASES@ "${HOME:-}"; do
  case "$b" in /*) ;; *) continue ;; esac
  for r in @FOLDERS@; do
    d="${b%/}/$r"
    [ -d "$d" ] || continue
    printf 'dir %s %s %s %s\n' "$r" "$(printf '%s' "$d" | hx)" "$(ino "$d")" "$(count "$d")"
  done
done
n=0
for f in $(grep -l -a -F -e --output-directory /proc/[0-9]*/cmdline 2>/dev/null); do
  [ "$n" -lt @M@ ] || break
  head -c @C@ "$f" 2>/dev/null | tr '\000' '\n' \
    | grep -q -a -e '^--output-directory$' -e '^--output-directory=' || continue
  o=$(head -c @C@ "$f" 2>/dev/null | tr '\000' '\n' | awk 'p {print; exit}
    $0 == "--output-directory" {p = 1; next}
    index($0, "--output-directory=") == 1 {print substr($0, 20); exit}' | head -c @P@)
  p=${f#/proc/}; p=${p%/cmdline}
  w=$(readlink "/proc/$p/cwd" 2>/dev/null | head -c @P@)
  d=
  case "$o" in /*) d=$o ;; ?*) [ -z "$w" ] || d="$w/$o" ;; esac
  s="- -"; i=-
  case "$d" in /*) if [ -d "$d" ]; then s="$(count "$d")"; i=$(ino "$d"); fi ;; esac
  printf 'proc %s %s %s %s %s %s\n' "$p" "$(head -c @C@ "$f" 2>/dev/null | hx)" \
    "$(printf '%s' "$w" | hx)" "$(printf '%s' "$d" | hx)" "$i" "$s"
  n=$((n + 1))
done
"""


def probe_bases() -> tuple[str, ...]:
    """Return the folders the probe looks under besides HOME: BASES, or the test suite's
    folders from TEST_BASES_ENV."""
    override = os.environ.get(TEST_BASES_ENV)
    if override:
        return tuple(p for p in override.split(":") if p.startswith("/"))
    return BASES


def detect_script(bases: tuple[str, ...]) -> str:
    """Given the base folders (trusted: ours), return the probe's sh script."""
    values = {
        "@BASES@": " ".join(shlex.quote(b) for b in bases),
        "@FOLDERS@": " ".join(shlex.quote(f.folder) for f in FRONT_ENDS),
        "@T@": str(FIND_TIMEOUT_S),
        "@N@": str(MAX_FILES + 1),
        "@P@": str(MAX_PATH),
        "@M@": str(MAX_PROCESSES),
        "@C@": str(MAX_CMDLINE),
    }
    script = SCRIPT
    for marker, value in values.items():
        script = script.replace(marker, value)
    return script


@dataclass(frozen=True)
class Found:
    """One output folder found on the box: which front end, the kind and root `add` would
    write, its files and bytes (counted up to MAX_FILES: `capped`), and how it was found
    (`folder`, or `process PID` for ComfyUI's --output-directory)."""

    app: str
    kind: str
    root: str
    files: int
    bytes: int
    capped: bool
    via: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Detection:
    """What the probe found: the folders (one per real folder, in probe order), the login
    user's home, and notes on what was dropped."""

    home: str | None = None
    found: list[Found] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def parse_detection(output: bytes) -> Detection:
    """Given the probe's stdout (after its start marker), return the Detection. Folders that
    are the same folder (a symlink, HOME being `/`) are listed once."""
    detection = Detection()
    seen: set[str] = set()
    for raw in output.split(b"\n"):
        words = raw.decode("ascii", "replace").split(" ")
        if words[0] == "home" and len(words) == 2:
            home = _path(words[1])
            detection.home = home if isinstance(home, str) else None
        elif words[0] == "dir" and len(words) == 6:
            _add(detection, seen, _folder_record(words), words[3])
        elif words[0] == "proc" and len(words) == 8:
            _add(detection, seen, _process_record(words, detection.notes), words[5])
        elif raw.strip():
            detection.notes.append("a line of the probe's output was not understood")
    return detection


def _add(detection: Detection, seen: set[str], found: Found | str | None, inode: str) -> None:
    if isinstance(found, str):
        detection.notes.append(found)
        return
    if found is None:
        return
    key = inode if inode != "-" else found.root
    if key in seen:
        return
    seen.add(key)
    detection.found.append(found)


def _folder_record(words: list[str]) -> Found | str | None:
    """`dir FOLDER HEXPATH DEV:INO FILES BYTES`"""
    front = BY_FOLDER.get(words[1])
    if front is None:
        return "a folder record named no known front end"
    root = _path(words[2])
    if not isinstance(root, str):
        return f"a {front.app} folder was dropped: {root.reason}"
    counts = _counts(words[4], words[5])
    if counts is None:
        return f"{front.app} folder {root!r}: its file count was not understood"
    files, size = counts
    capped = files > MAX_FILES
    return Found(front.app, front.kind, root, min(files, MAX_FILES), size, capped, "folder")


def _process_record(words: list[str], notes: list[str]) -> Found | str | None:
    """`proc PID HEXARGS HEXCWD HEXDIR DEV:INO FILES BYTES`: a process with
    --output-directory. Kept only when its arguments say ComfyUI (a `main.py` in a folder
    named like ComfyUI, or run from one) and the folder the script counted is the one
    these arguments name."""
    pid = words[1] if words[1].isdigit() and len(words[1]) < 12 else "?"
    try:
        argv = [a.decode("utf-8", "surrogateescape") for a in bytes.fromhex(words[2]).split(b"\0")]
    except ValueError:
        return f"process {pid}: its arguments were not understood"
    cwd = _path(words[3])
    cwd_text = cwd if isinstance(cwd, str) else ""
    if not _is_comfyui(argv, cwd_text):
        return None
    wanted = _output_directory(argv)
    if wanted is None:
        return f"ComfyUI process {pid}: {COMFYUI_ARG} has no value in its first {MAX_CMDLINE} bytes"
    if not wanted.startswith("/"):
        wanted = f"{cwd_text}/{wanted}" if cwd_text else ""
    wanted = _normal(wanted)
    root = _path(words[4])
    if not isinstance(root, str):
        return f"ComfyUI process {pid}: its {COMFYUI_ARG} was dropped: {root.reason}"
    if root != wanted:
        return f"ComfyUI process {pid}: its {COMFYUI_ARG} was not read back intact"
    counts = _counts(words[6], words[7])
    if counts is None:
        return f"ComfyUI process {pid}: {COMFYUI_ARG} {root!r} is not a folder"
    files, size = counts
    return Found(
        "ComfyUI", "comfyui", root, min(files, MAX_FILES), size, files > MAX_FILES, f"process {pid}"
    )


def _is_comfyui(argv: list[str], cwd: str) -> bool:
    scripts = [a for a in argv[:8] if a == "main.py" or a.endswith("/main.py")]
    if not scripts:
        return False
    return any("comfy" in a.lower() for a in scripts) or "comfy" in os.path.basename(cwd).lower()


def _output_directory(argv: list[str]) -> str | None:
    """The value of ComfyUI's --output-directory (last one wins, as argparse does); None
    when the arguments were cut before it."""
    value = None
    for index, arg in enumerate(argv):
        if arg == COMFYUI_ARG and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith(COMFYUI_ARG + "="):
            value = arg[len(COMFYUI_ARG) + 1 :]
    return value or None


@dataclass(frozen=True)
class Dropped:
    reason: str


def _path(hex_text: str) -> str | Dropped:
    """Given a hex-encoded remote path, return it as text, or Dropped saying why not: not
    absolute, too long, not UTF-8, or holding a control character (a config `root` and a
    terminal line must hold neither)."""
    if hex_text in ("", "-"):
        return Dropped("empty")
    try:
        data = bytes.fromhex(hex_text)
    except ValueError:
        return Dropped("not understood")
    if len(data) > MAX_PATH:
        return Dropped(f"over {MAX_PATH} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return Dropped("its name is not UTF-8")
    if not text.startswith("/"):
        return Dropped("not an absolute path")
    if not text.isprintable():
        return Dropped(f"its name holds a control character ({_escaped(text)})")
    return _normal(text)


def _normal(path: str) -> str:
    """A path without doubled or trailing slashes (as the probe builds them)."""
    while "//" in path:
        path = path.replace("//", "/")
    return path.rstrip("/") or "/" if path else path


def _escaped(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)[:200]


def _counts(files: str, size: str) -> tuple[int, int] | None:
    if not (files.isascii() and files.isdigit() and size.isascii() and size.isdigit()):
        return None
    if len(files) > 12 or len(size) > 20:
        return None
    return int(files), int(size)


@dataclass(frozen=True)
class Choice:
    """What `add` writes: the kind and root."""

    kind: str
    root: str


class NoChoice(Exception):
    """Nothing to pick from (the message says what to pass)."""


def choose(found: list[Found], kind: str, root: str | None) -> Choice | list[Found]:
    """Given what the probe found and the caller's `kind` (`auto` or a config kind) and
    `root` (or None), return the Choice, or the candidates to ask about when several fit.

    `root` decides the folder (its kind: `kind`, else a found folder's, else generic);
    a `kind` alone picks among the folders of that kind (none found: its preset root;
    generic has none). Raise NoChoice when nothing fits."""
    if root is not None:
        if kind != "auto":
            return Choice(kind, root)
        same = [f for f in found if f.root == root]
        return Choice(same[0].kind if same else "generic", root)
    fitting = [f for f in found if kind in ("auto", f.kind)]
    if len(fitting) == 1:
        return Choice(fitting[0].kind, fitting[0].root)
    if len(fitting) > 1:
        return fitting
    if kind == "auto":
        raise NoChoice(
            "no output folder of a known front end was found (see README, `forge-syncctl"
            " add`, for the folders probed): pass --kind and --root"
        )
    preset = PRESETS[kind].root
    if preset is None:
        raise NoChoice(f"no output folder found: kind {kind} needs --root")
    return Choice(kind, preset)
