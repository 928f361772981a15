"""The package's layers, checked from the code itself: the rules a run applies speak of a
container's files in the package's own words (`forge_syncd/remote/`), never through the SSH
library, so they load, and are tested, without it; and the SSH library is the SSH
transport's alone (`forge_syncd/transports/ssh/`)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# The pure rules: what to fetch, when a plan may be reused, when a fetched file is verified,
# when a burst ends, when a reported file is complete, what may be purged, whether a library
# copy is safe.
RULES = (
    "forge_syncd.cleanup.rules",
    "forge_syncd.sync.plan",
    "forge_syncd.sync.memo",
    "forge_syncd.sync.verify",
    "forge_syncd.live.changes",
    "forge_syncd.live.burst",
    "forge_syncd.library.safety",
)


@pytest.mark.parametrize("module", RULES)
def test_the_rules_import_without_paramiko(module: str) -> None:
    """Importing a rule module, in a fresh interpreter, loads no paramiko: the rules see a
    container through the transport-neutral types and interface only."""
    loaded = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0]"
            " == 'paramiko')[:5])",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert loaded.stdout.strip() == "[]", f"{module} loads paramiko: {loaded.stdout.strip()}"


def paramiko_uses(path: Path) -> list[str]:
    """Return where the module at `path` imports paramiko or names its SFTP prefetch thread
    (`line N: ...`)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "_prefetch_thread" in node.value:
                found.append(f"line {node.lineno}: names paramiko's _prefetch_thread")
            continue
        else:
            continue
        found += [
            f"line {node.lineno}: imports {n}" for n in names if n.split(".")[0] == "paramiko"
        ]
    return found


def test_paramiko_only_under_transports_ssh() -> None:
    """No module outside `forge_syncd/transports/ssh/` imports paramiko or knows the name of
    its SFTP prefetch thread: the SSH library is one transport's business, and every other
    layer (discovery, logging, onboarding) reaches it through that transport's modules."""
    package = ROOT / "forge_syncd"
    ssh = package / "transports" / "ssh"
    offending = {
        str(path.relative_to(ROOT)): uses
        for path in sorted(package.rglob("*.py"))
        if ssh not in path.parents and (uses := paramiko_uses(path))
    }
    assert offending == {}


def package_imports(package: Path) -> dict[str, set[str]]:
    """Return, for each module of `package` (dotted name), the package's modules it imports
    anywhere in its text: at its top, in a function, under `if TYPE_CHECKING:`. A name
    imported from a package is an edge to its submodule when it is one, else to the
    package's `__init__`."""
    root = package.parent
    paths = {}
    for path in package.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def known(name: str) -> str:
        while name and name not in paths:
            name = name.rpartition(".")[0]
        return name

    graph: dict[str, set[str]] = {}
    for module, path in paths.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets.update(known(alias.name) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = module.split(".")[: None if path.name == "__init__.py" else -1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join([*here, base] if base else here)
                targets.update(known(f"{base}.{alias.name}") or known(base) for alias in node.names)
        graph[module] = targets - {"", module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected parts of `graph` with more than one module, each
    sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, edges = work[-1]
            step = next((e for e in edges if e not in index or e in stack), None)
            if step is not None and step not in index:
                index[step] = low[step] = len(index)
                stack.append(step)
                work.append((step, iter(sorted(graph.get(step, ())))))
                continue
            if step is not None:
                low[node] = min(low[node], index[step])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = stack[stack.index(node) :]
                del stack[stack.index(node) :]
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def test_no_import_cycles() -> None:
    """No two modules of forge_syncd import each other, directly or through others, even
    under `if TYPE_CHECKING:` or inside a function: each layer depends on the ones below
    it only (the control answers see the daemon through `service/view.DaemonView`, a
    manifest table sees the database through `library/manifest/rows.Handle`), so any
    module can be read, loaded and tested without the ones above it."""
    graph = package_imports(ROOT / "forge_syncd")
    assert "forge_syncd.service.daemon" in graph["forge_syncd.cli.syncd"]  # the graph sees
    assert cycles(graph) == []
