"""Metadata in bounded work (issue 14, item 3): hostile text at the largest size allowed is
parsed within its CPU budget, what was cut off is said in `metadata_error`, nothing raises,
and no single step of parsing (a C call holding the GIL) runs long enough to stall the
control socket. Work is measured in the parsing thread's CPU time, never in wall-clock
time (a busy machine stretches the one, not the other); `python -m bench.timings` prints
the wall-clock figures."""

from __future__ import annotations

import gc
import json
import re
import struct
import sys
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, NamedTuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forge_syncd.events import metadata
from forge_syncd.events.budget import DEFAULT_BUDGET, MetadataBudget, Meter
from forge_syncd.events.infotext import parse_settings, split_infotext
from forge_syncd.events.metadata import parse_comfy_graph, parse_infotext, read_generation_info

MAX = DEFAULT_BUDGET.max_text
PER_FILE_CPU_S = 2.0  # CPU seconds; generous: the worst file takes about 0.05 s here
GIL_HOLD_CPU_S = 0.2  # the longest step between two Python-level calls, in CPU seconds
TEXT_ROOM = MAX - len(b"parameters\0\0\0\0\0")  # the text of an iTXt chunk of MAX bytes
CAP = DEFAULT_BUDGET.max_json_containers

# The settings regex this parser used before (A1111's own, nearly): the reference for what
# the linear parser must find. It backtracks, so it only ever runs on short lines here.
OLD_PAIR = re.compile(r'\s*([\w ./-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


def old_split(text: str) -> tuple[str, str, dict[str, str]]:
    """Given infotext, return (prompt, negative prompt, settings) as the old parser did."""
    lines = text.strip().split("\n")
    found: dict[str, str] = {}
    if lines and re.match(r"^\s*Steps:", lines[-1]):
        found = {k.strip(): v.strip().strip('"') for k, v in OLD_PAIR.findall(lines.pop())}
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    into_negative = False
    for line in lines:
        if line.startswith("Negative prompt:"):
            into_negative = True
            line = line[len("Negative prompt:") :].lstrip()
        (negative_lines if into_negative else prompt_lines).append(line)
    return "\n".join(prompt_lines).strip(), "\n".join(negative_lines).strip(), found


def fill(prefix: str, unit: str, suffix: str = "", size: int = TEXT_ROOM) -> str:
    """Return `prefix`, `unit` repeated and `suffix`: `size` UTF-8 bytes at most."""
    room = size - len((prefix + suffix).encode())
    count = room // len(unit.encode())
    return prefix + unit * count + suffix


def fit(build: Callable[[int], str], size: int = TEXT_ROOM) -> str:
    """Given a builder of JSON from a node count, return the largest output under `size`."""
    count = size * 1000 // len(build(1000).encode())
    while len(text := build(count).encode()) > size:
        count -= max(1, count * (len(text) - size) // len(text))
    return build(count)


def dumps(graph: object) -> str:
    """Return compact JSON (as many nodes as possible in the size allowed)."""
    return json.dumps(graph, separators=(",", ":"))


def sampler_hub(count: int) -> str:
    """Every sampler's latent comes from one node whose many inputs end, last, in a sampler:
    one walk per sampler (the old code) visits every input each time."""
    inputs: dict[str, object] = {f"i{n}": [f"l{n}", 0] for n in range(count)}
    inputs["z"] = ["s0", 0]
    graph: dict[str, object] = {"h": {"class_type": "Hub", "inputs": inputs}}
    graph.update({f"l{n}": {"inputs": {}} for n in range(count)})
    graph.update(
        {
            f"s{n}": {"class_type": "KSampler", "inputs": {"latent_image": ["h", 0]}}
            for n in range(count)
        }
    )
    return dumps(graph)


def cycles(count: int) -> str:
    """A ring of samplers, conditioning and text nodes, every link pointing around the ring."""
    kinds = ("KSampler", "ConditioningCombine", "CLIPTextEncode", "StringConcat")

    def node(n: int) -> object:
        after, before = [str((n + 1) % count), 0], [str((n - 1) % count), 0]
        return {
            "class_type": kinds[n % 4],
            "inputs": {
                "positive": after,
                "negative": before,
                "latent_image": after,
                "model": after,
                "text": after,
            },
        }

    return dumps({str(n): node(n) for n in range(count)})


def prompt_fan(count: int) -> str:
    """One sampler whose prompt combines a huge number of text nodes."""
    graph: dict[str, object] = {
        "s": {"class_type": "KSampler", "inputs": {"positive": ["c", 0], "negative": ["c", 0]}},
        "c": {"class_type": "Combine", "inputs": {f"i{n}": [f"t{n}", 0] for n in range(count)}},
    }
    graph.update(
        {f"t{n}": {"class_type": "CLIPTextEncode", "inputs": {"text": "x"}} for n in range(count)}
    )
    return dumps(graph)


def empty_nodes(count: int) -> str:
    """A huge number of nodes."""
    return dumps({str(n): {} for n in range(count)})


# Each at the largest size allowed: (text chunk keyword, text). Infotext first.
WORST_TEXTS: dict[str, tuple[str, str]] = {
    "steps_then_words": ("parameters", fill("Steps: 20, ", "photo of a duck ")),
    "commas": ("parameters", fill("Steps: ", ",")),
    "colons": ("parameters", fill("Steps: ", ":")),
    "quotes": ("parameters", fill("Steps: ", '"')),
    "commas_colons_quotes": ("parameters", fill("Steps: ", ',:"')),
    "escaped_quotes": ("parameters", fill('Steps: 1, a: "', '\\"')),
    "backslashes": ("parameters", fill('Steps: 1, a: "', "\\")),
    "many_pairs": ("parameters", fill("Steps: ", "a:,")),
    "quoted_not_closed_by_comma": ("parameters", fill("Steps: ", 'a: "x" y, ')),
    "quoted_commas": ("parameters", fill("Steps: ", 'a: "x,y", ')),
    "one_long_key": ("parameters", fill("Steps: ", "a", ":")),
    "blank_keys": ("parameters", fill("Steps: ", " :")),
    "tabs_before_colons": ("parameters", fill("Steps: ", "\t:")),
    "mixed_separators": ("parameters", fill("Steps: ", 'a b:"\\, :\t"x",')),
    "unicode_words": ("parameters", fill("Steps: ", "é\u2028ß ")),
    "newlines": ("parameters", fill("", "\n", "Steps: 1")),
    "negative_lines": ("parameters", fill("", "Negative prompt:\n", "Steps: 1")),
    "prompt_words": ("parameters", fill("", "masterpiece, (best quality:1.2), ", "\nSteps: 1")),
    "deep_lists": ("prompt", "[" * TEXT_ROOM),
    "deep_objects": ("prompt", fill("", '{"a":')),
    "deep_lists_at_the_cap": ("prompt", fill("[" * CAP, " ")),
    "huge_number": ("prompt", "1" * TEXT_ROOM),
    "many_numbers": ("prompt", fill("[", "1,", "1]")),
    "long_numbers": ("prompt", fill("[", "9" * 60 + ",", "1]")),
    "many_lists": ("prompt", fill("[", "[],", "1]")),
    "lists_at_the_cap": ("prompt", fill("[" + "[]," * (CAP - 1) + '"', "x", '"]')),
    "many_strings": ("prompt", fill("[", '"",', "1]")),
    "many_keys": ("prompt", fit(lambda count: dumps({str(n): 0 for n in range(count)}))),
    "many_nodes": ("prompt", fit(empty_nodes)),
    "sampler_hub": ("prompt", fit(sampler_hub)),
    "cycles": ("prompt", fit(cycles)),
    "prompt_fan": ("prompt", fit(prompt_fan)),
}
# What `metadata_error` starts with for the cases cut off or refused (the others: None).
REASONS = {
    "many_pairs": "too_large: infotext settings line has over 1000 entries",
    "quoted_not_closed_by_comma": "too_large: infotext settings line has over 1000 entries",
    "quoted_commas": "too_large: infotext settings line has over 1000 entries",
    "mixed_separators": "too_large: infotext settings line has over 1000 entries",
    "deep_lists": "too_large: ComfyUI prompt opens",
    "deep_objects": "too_large: ComfyUI prompt opens",
    "deep_lists_at_the_cap": "malformed: ComfyUI prompt JSON nested too deeply",
    "huge_number": "malformed: ComfyUI prompt is not JSON: a number of",
    "many_numbers": "malformed: ComfyUI prompt is not a graph of nodes",
    "long_numbers": "malformed: ComfyUI prompt is not a graph of nodes",
    "many_lists": "too_large: ComfyUI prompt opens",
    "lists_at_the_cap": "malformed: ComfyUI prompt is not a graph of nodes",
    "many_strings": "malformed: ComfyUI prompt is not a graph of nodes",
    "many_keys": "malformed: ComfyUI prompt is not a graph of nodes",
}


def png(*chunks: tuple[bytes, bytes]) -> bytes:
    """Return a PNG made of IHDR (64 x 32) and the given (kind, body) chunks."""
    ihdr = (b"IHDR", struct.pack(">IIBBBBB", 64, 32, 8, 2, 0, 0, 0))
    parts = [b"\x89PNG\r\n\x1a\n"]
    for kind, body in (ihdr, *chunks):
        parts += [
            struct.pack(">I", len(body)),
            kind,
            body,
            struct.pack(">I", zlib.crc32(kind + body)),
        ]
    return b"".join(parts)


def itxt(keyword: str, text: str) -> tuple[bytes, bytes]:
    """Return an uncompressed iTXt chunk of at most MAX bytes."""
    body = keyword.encode() + b"\0\0\0\0\0" + text.encode()
    assert len(body) <= MAX
    return b"iTXt", body


@pytest.fixture(scope="module")
def worst_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Write each worst case as a PNG text chunk of the largest size allowed."""
    folder = tmp_path_factory.mktemp("worst")
    files = {}
    for name, (keyword, text) in WORST_TEXTS.items():
        files[name] = folder / f"{name}.png"
        files[name].write_bytes(png(itxt(keyword, text)))
    return files


def timed_read(
    path: Path, budget: MetadataBudget = DEFAULT_BUDGET
) -> tuple[float, metadata.GenerationInfo]:
    """Return (CPU seconds of this thread, result) of reading one file's metadata."""
    start = time.thread_time()
    info = read_generation_info(bytes(path), budget)
    return time.thread_time() - start, info


@pytest.mark.parametrize("name", sorted(WORST_TEXTS))
def test_worst_case_file_is_read_within_its_budget(worst_files: dict[str, Path], name: str) -> None:
    """Each hand-made worst case at 1 MiB is read in well under 2 s of CPU (the old parser:
    hours for the infotext ones, minutes for the sampler hub), without raising, its image
    size read, and `metadata_error` set exactly when something was cut off or refused."""
    cpu, info = timed_read(worst_files[name])
    assert cpu < PER_FILE_CPU_S, f"{name}: {cpu:.2f} s of CPU"
    assert (info.width, info.height) == (64, 32)
    assert (info.metadata_error or "").startswith(REASONS.get(name, "")), info.metadata_error
    if name not in REASONS:
        assert info.metadata_error is None
        assert info.generator is not None


def test_steps_then_a_mebibyte_of_words_is_parsed_in_linear_time(
    worst_files: dict[str, Path],
) -> None:
    """Issue 14 item 3: "Steps: 20, " and 40 KB of words took 20 s; 1 MiB of them (the text
    limit) is now read within the CPU budget, with the settings the line holds."""
    cpu, info = timed_read(worst_files["steps_then_words"])
    assert cpu < PER_FILE_CPU_S
    assert info.steps == 20 and info.prompt is None and info.metadata_error is None


def test_sampler_graph_with_cycles_picks_a_sampler_and_stops() -> None:
    """A ComfyUI graph where every link runs around a ring: tracing ends, a sampler is chosen
    (every sampler is fed by another, so the first by id) and texts are collected once."""
    info = parse_comfy_graph(cycles(8), None)
    assert info is not None and info.generator == "comfyui"
    assert info.prompt is None and info.model is None


def test_many_settings_pairs_keep_the_first_ones_and_say_the_rest_was_cut() -> None:
    """Past `max_settings` pairs the rest of the settings line is ignored, and noted."""
    meter = Meter(MetadataBudget(max_settings=3))
    found = parse_settings("Steps: 5, Seed: 7, Sampler: Euler, Model: m", meter)
    assert found == {"Steps": "5", "Seed": "7", "Sampler": "Euler"}
    assert meter.error == "too_large: infotext settings line has over 3 entries, the rest ignored"


def test_cpu_budget_cuts_parsing_off_and_says_so(worst_files: dict[str, Path]) -> None:
    """A file that takes more than its CPU budget is cut off: `metadata_error` names the
    budget and the stage, the image size (read before) is kept, no metadata is made up."""
    _cpu, info = timed_read(worst_files["many_pairs"], MetadataBudget(cpu_seconds=0.0))
    assert info.metadata_error is not None
    assert info.metadata_error.startswith("over_time: over 0 s of CPU in infotext")
    assert (info.width, info.height) == (64, 32)
    assert info.steps is None and info.generator is None


def test_many_chunks_stop_the_walk_and_say_so(tmp_path: Path) -> None:
    """A PNG of 200,000 empty chunks is walked only up to `max_chunks`, with a note."""
    path = tmp_path / "chunks.png"
    path.write_bytes(png(*[(b"abCd", b"")] * 200_000))
    cpu, info = timed_read(path)
    assert cpu < PER_FILE_CPU_S
    assert (
        info.metadata_error
        == "too_large: no metadata in the first 100000 PNG chunks (1200021 bytes)"
    )
    assert (info.width, info.height) == (64, 32)


def test_text_over_the_caps_is_skipped_and_said(tmp_path: Path) -> None:
    """A text chunk one byte over the cap, text chunks past 4 MiB in all and a zTXt bomb are
    skipped with a reason each; the chunks within the caps are still read."""
    path = tmp_path / "caps.png"
    bomb = b"bomb\0\0" + zlib.compress(b"x" * (8 * MAX))
    chunks = [(b"tEXt", b"big\0" + b"x" * MAX), (b"zTXt", bomb)]
    chunks += [(b"tEXt", f"t{n}\0".encode() + b"x" * (MAX - 4)) for n in range(5)]
    path.write_bytes(png(*chunks, (b"tEXt", b"parameters\0duck\nSteps: 3")))
    info = read_generation_info(bytes(path))
    assert info.steps == 3 and info.prompt == "duck"
    assert info.metadata_error is not None
    problems = info.metadata_error.split("; ")
    assert problems[0] == (
        "too_large: PNG tEXt chunk 'big' of 1048580 bytes skipped: over the 1048576 bytes allowed per chunk"
    )
    assert (
        problems[1]
        == "too_large: PNG zTXt chunk 'bomb': inflates past the 1048576 bytes of text allowed"
    )
    assert problems[2:] == [
        f"too_large: PNG tEXt chunk 't{n}' of 1048575 bytes skipped: over the 4194304 bytes of "
        "text allowed per file"
        for n in (3, 4)
    ]


def test_exceptions_become_metadata_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No exception leaves read_generation_info: a missing file, a folder and a bug in a parser
    each give a result whose `metadata_error` says what happened."""
    assert read_generation_info(bytes(tmp_path / "gone.png")).metadata_error == (
        "unreadable: No such file or directory"
    )
    (tmp_path / "folder.png").mkdir()
    assert (
        read_generation_info(bytes(tmp_path / "folder.png")).metadata_error
        == "unreadable: Is a directory"
    )

    def broken(text: str, meter: Meter) -> tuple[str, str, dict[str, str]]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(metadata, "split_infotext", broken)
    path = tmp_path / "a.png"
    path.write_bytes(png((b"tEXt", b"parameters\0duck\nSteps: 3")))
    info = read_generation_info(bytes(path))
    assert info.metadata_error == "internal: RuntimeError: a bug"
    assert (info.width, info.height) == (64, 32)


def test_json_numbers_and_nesting_are_refused_quickly() -> None:
    """Deep nesting, a 1 MiB number, a number too long to be a seed and too many lists give no
    graph and a reason, instead of a RecursionError or a long C call holding the GIL."""
    for text, reason in (
        ("[" * CAP, "malformed: ComfyUI prompt JSON nested too deeply"),
        ("1" * MAX, "malformed: ComfyUI prompt is not JSON: a number of 1048576 digits"),
        (
            '{"1": {"inputs": {"seed": ' + "9" * 65 + "}}}",
            "malformed: ComfyUI prompt is not JSON: a number of 65 digits",
        ),
        (
            "[]" * (CAP + 1),
            "too_large: ComfyUI prompt opens 100001 lists and objects (limit 100000)",
        ),
    ):
        meter = Meter(DEFAULT_BUDGET)
        assert parse_comfy_graph(text, None, meter) is None
        assert meter.error == reason


KEY_TOKENS = ["Steps:", "Seed", "CFG scale: ", "a", "9", "_", ".", "/", "-", "é", "·"]
BLANK_TOKENS = [" ", "\t", "\r", "\x0b", "\x1c", "\xa0", "\u2028", "\u3000"]
SETTINGS_TOKENS = st.sampled_from([*KEY_TOKENS, *BLANK_TOKENS, ":", ",", '"', "\\"])
TEXT_TOKENS = st.one_of(
    SETTINGS_TOKENS, st.sampled_from(["\n", "Negative prompt:", "\nSteps: 1, "])
)


@settings(max_examples=3000, deadline=None)
@given(st.lists(SETTINGS_TOKENS, max_size=40).map("".join))
def test_settings_equal_the_old_regex(line: str) -> None:
    """On any line of key characters, blanks, colons, commas, quotes and backslashes the linear
    parser finds exactly the pairs the old backtracking regex found."""
    expected = {k.strip(): v.strip().strip('"') for k, v in OLD_PAIR.findall(line)}
    assert parse_settings(line, Meter(DEFAULT_BUDGET)) == expected


@settings(max_examples=2000, deadline=None)
@given(st.lists(TEXT_TOKENS, max_size=60).map("".join))
def test_infotext_split_equals_the_old_parser(text: str) -> None:
    """Prompt, negative prompt and settings of any infotext equal the old parser's."""
    prompt, negative, found = split_infotext(text, Meter(DEFAULT_BUDGET))
    assert (prompt.strip(), negative.strip(), found) == old_split(text)


NASTY = ' \t\n\r,:"\\a9_./-é{}[]'


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["", "Steps: ", 'Steps: 1, a: "', "prompt\nNegative prompt: x\nSteps: "]),
    st.text(alphabet=NASTY, min_size=1, max_size=12),
)
def test_any_repeated_pattern_at_max_size_is_parsed_within_budget(prefix: str, unit: str) -> None:
    """Infotext made of any short pattern repeated to 1 MiB is parsed within the budget."""
    text = fill(prefix, unit)
    start = time.thread_time()
    info = parse_infotext(text, Meter(DEFAULT_BUDGET))
    assert time.thread_time() - start < PER_FILE_CPU_S
    assert info.generator == "a1111"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet='{}[]",:0123456789.eE-\\ antrue', min_size=1, max_size=12))
def test_any_repeated_json_pattern_at_max_size_is_parsed_within_budget(unit: str) -> None:
    """A ComfyUI prompt made of any short pattern repeated to 1 MiB is parsed (or refused)
    within the budget, without raising."""
    meter = Meter(DEFAULT_BUDGET)
    start = time.thread_time()
    parse_comfy_graph(fill("", unit), None, meter)
    assert time.thread_time() - start < PER_FILE_CPU_S


class Step(NamedTuple):
    """The longest stretch of a thread's CPU time between two profiler events."""

    cpu_s: float
    after: str  # the event that started it: "c_call <name>", "call <name>", ...


def longest_step(work: Callable[[], None]) -> Step:
    """Run `work` in this thread under a profiler that sees every call into and return from
    Python and C functions; return the longest stretch of this thread's CPU time between two
    such events.

    A C function holds the GIL from its call to its return unless it releases it, so no
    GIL hold by a C call (regex, json.loads, zlib, decode...) outlasts the longest step:
    the step bounds it from above, in CPU time, which other load on the machine does not
    stretch. (Pure Python between two calls counts too, though the interpreter hands the
    GIL over every 5 ms there: the bound is conservative.)
    """
    clock = time.thread_time
    longest: list[Any] = [0.0, None, None, None]  # CPU s, then the event, arg and frame
    last: list[Any] = [clock(), "start", None, None]

    def profile(frame: FrameType, event: str, arg: object) -> None:
        now = clock()
        if now - last[0] > longest[0]:
            longest[:] = [now - last[0], *last[1:]]
        last[:] = [now, event, arg, frame]  # the callback's own time counts: conservative

    # A collection of the whole process' heap (this test process holds every earlier
    # test's objects) is no step of the parser's: collect first, and not during the work.
    gc.collect()
    gc.disable()
    sys.setprofile(profile)
    try:
        work()
    finally:
        sys.setprofile(None)
        gc.enable()
    cpu_s, event, arg, frame = longest
    name = getattr(arg, "__qualname__", None) if str(event).startswith("c_") else None
    return Step(cpu_s, f"{event} {name or (frame.f_code.co_qualname if frame else '')}")


def test_no_step_of_parsing_hostile_files_holds_the_gil_long(
    worst_files: dict[str, Path],
) -> None:
    """Reading every worst case, no stretch between two Python-level calls (so no single C
    call: regex, json.loads, zlib, decode) takes 0.2 s of CPU: the control socket, /metrics
    and the watchdog, in other threads, get the GIL back within that. The old parser spent
    1.2 s in one regex call on 16 KB of words.

    Measured in the parsing thread's CPU time (profiler events), so a loaded machine cannot
    fail it; `python -m bench.timings` prints the wall-clock stall another thread sees."""
    rounds = []
    for path in worst_files.values():

        def read(path: Path = path) -> None:
            read_generation_info(bytes(path))

        rounds.append((path.name, longest_step(read)))
    name, worst = max(rounds, key=lambda item: item[1].cpu_s)
    assert worst.cpu_s < GIL_HOLD_CPU_S, f"{name}: {worst}"
