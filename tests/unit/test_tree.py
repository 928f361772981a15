"""The package's shape, checked from the tree itself: no module, class or function grows past
what a reader takes in at once, and the README's "Where each rule lives" table names every
folder and root module there is, and nothing that is not."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "forge_syncd"

MAX_MODULE = 400
MAX_CLASS = 200
MAX_FUNCTION = 60

# Text that is data, not logic: SQL migrations (frozen history, never edited) and the
# scripts a transport runs on a container. Their lines are not counted in their module.
DATA = {
    ("library/manifest/schema.py", "MIGRATIONS"),
    ("catalog/sqlite_migrations.py", "MIGRATIONS"),
    ("catalog/postgres_migrations.py", "MIGRATIONS"),
    ("transports/shell/watch.py", "_PYTHON_WATCHER"),
    ("transports/shell/delete.py", "PYTHON_DELETE"),
    ("transports/shell/hashing.py", "PYTHON_HASH"),
    ("transports/shell/probe.py", "PROBE_SCRIPT"),
}


def span(node: ast.AST) -> int:
    return int(getattr(node, "end_lineno", 0)) - int(getattr(node, "lineno", 0)) + 1


def data_lines(relative: str, tree: ast.Module) -> int:
    """Return the lines of the module-level data constants named in DATA."""
    lines = 0
    for node in tree.body:
        targets = []
        if isinstance(node, ast.Assign):
            targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            targets = [node.target.id]
        if any((relative, name) in DATA for name in targets):
            lines += span(node)
    return lines


def oversized() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        text = path.read_text()
        tree = ast.parse(text, str(path))
        length = len(text.splitlines()) - data_lines(relative, tree)
        if length > MAX_MODULE:
            found.append(f"{relative}: {length} lines (module, max {MAX_MODULE})")
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and span(node) > MAX_CLASS:
                found.append(f"{relative}:{node.name}: {span(node)} lines (class)")
            elif (
                isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                and span(node) > MAX_FUNCTION
            ):
                found.append(f"{relative}:{node.name}: {span(node)} lines (function)")
    return found


def test_sizes() -> None:
    """No module over 400 lines (SQL migrations and remote scripts not counted), no class
    over 200, no function over 60: each is read at once, and a rule has room for one home."""
    assert oversized() == []


def table_paths() -> set[str]:
    """Return every `path` the README's "Where each rule lives" table names in its first
    column."""
    readme = (ROOT / "README.md").read_text()
    start = readme.index("Where each rule lives (`forge_syncd/`)")
    rows = []
    for line in readme[start:].splitlines()[1:]:
        if line.startswith("|"):
            rows.append(line)
        elif rows:
            break
    paths = set()
    for row in rows[2:]:
        first = row.split("|")[1]
        paths.update(re.findall(r"`([^`]+)`", first))
    return paths


def tree_entries() -> set[str]:
    """Return the package's folders (`name/`) and root modules (`name.py`)."""
    entries = set()
    for path in PACKAGE.iterdir():
        if path.is_dir() and (path / "__init__.py").exists():
            entries.add(path.name + "/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            entries.add(path.name)
    return entries


def test_where_each_rule_lives_names_the_tree() -> None:
    """Every folder and root module of forge_syncd/ is named in the README's table (as
    `name/`, or through a path inside it), and every path the table names exists."""
    named = table_paths()
    missing = []
    for entry in sorted(tree_entries()):
        if not any(p == entry or p.startswith(entry) for p in named):
            missing.append(entry)
    assert missing == [], f"not in the README's table: {missing}"
    gone = [p for p in sorted(named) if not (PACKAGE / p.split(" ")[0].rstrip("/")).exists()]
    assert gone == [], f"the README's table names what does not exist: {gone}"
