"""Config drop-ins (`forge-sync.d/` beside the config, `<state_dir>/containers.d/`): read
in order, limited to containers and discover, every problem with the drop-in's file and
line; and a config without containers, which is valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.config import (
    NO_CONTAINERS,
    ConfigError,
    admin_dropin_folder,
    dropin_folder,
    dropin_path,
    load_config,
    written_by_daemon,
)
from tests.support.cli import forge_syncd


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "id_ed25519"
    path.write_text("not checked here, only readable\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def main(tmp_path: Path, key: Path) -> Path:
    """A main config with one container (line 7) and defaults every drop-in uses."""
    path = tmp_path / "etc" / "forge-sync.yaml"
    path.parent.mkdir()
    path.write_text(
        f"""media_root: {tmp_path}/media
state_dir: {tmp_path}/state
defaults:
  ssh: {{identity_file: {key}, port: 2200}}
  sync: {{interval: 10m}}
containers:
  - {{name: main-a, kind: comfyui, host: h1}}
"""
    )
    return path


def admin(main: Path, name: str, text: str) -> Path:
    """Write an admin's drop-in `name` beside `main`; return its path."""
    folder = main.parent / "forge-sync.d"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def state(main: Path, name: str, text: str) -> Path:
    """Write a daemon-written drop-in `name` in the state folder; return its path."""
    folder = main.parent.parent / "state" / "containers.d"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text)
    return folder / name


def issues_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    return [str(issue) for issue in caught.value.issues]


def test_main_then_admin_then_state_dropins_in_name_order(main: Path) -> None:
    """Containers come from the main file, then the admins' drop-ins, then the daemon's, each
    folder in name order; each records its file; the main file's defaults apply to all;
    `dropins` lists the files read, in that order."""
    b = admin(main, "20-b.yaml", "containers:\n  - {name: admin-b, kind: comfyui, host: h3}\n")
    a = admin(
        main,
        "10-a.yaml",
        "containers:\n  - {name: admin-a, kind: forge, host: h2, ssh: {port: 22}}\n",
    )
    s = state(main, "c.yaml", "containers:\n  - {name: state-c, kind: comfyui, host: h4}\n")
    empty = admin(main, "30-empty.yaml", "# nothing yet\n")
    config = load_config(main)
    names = [c.name for c in config.containers]
    assert names == ["main-a", "admin-a", "admin-b", "state-c"]
    assert [c.source for c in config.containers] == [str(main), str(a), str(b), str(s)]
    assert config.dropins == (a, b, empty, s)
    ports = {c.name: c.ssh.port for c in config.containers}
    assert ports == {"main-a": 2200, "admin-a": 22, "admin-b": 2200, "state-c": 2200}
    assert all(c.sync.schedule.interval_s == 600 for c in config.containers)


def test_dropin_discover_sources_are_added(main: Path) -> None:
    """A drop-in may add discovery sources, after the main file's, with their templates."""
    admin(
        main,
        "d.yaml",
        "discover:\n  - {type: command, command: [/bin/true], kind: forge, ssh: {port: 2}}\n",
    )
    (source,) = load_config(main).discover
    assert source.command == ("/bin/true",)
    assert '"port": 2' in source.template_json


def test_a_name_defined_twice_names_both_files_and_lines(main: Path) -> None:
    """The same container name in the main file and a drop-in, or in two drop-ins, is an
    error at the second place naming the first's file and line."""
    one = admin(main, "10-one.yaml", "containers:\n  - {name: main-a, kind: comfyui, host: h}\n")
    two = state(
        main,
        "x.yaml",
        "# added\ncontainers:\n  - {name: other, kind: comfyui, host: h}\n"
        "  - name: other-2\n    kind: comfyui\n    host: h\n",
    )
    three = admin(main, "20-two.yaml", "containers:\n  - {name: other-2, kind: comfyui, host: h}\n")
    assert issues_of(main) == [
        f"{one}:2: containers[0].name: duplicate container name 'main-a' (first at {main}:7)",
        f"{two}:4: containers[1].name: duplicate container name 'other-2' (first at {three}:2)",
    ]


def test_other_keys_in_a_dropin_are_refused_with_file_and_line(main: Path) -> None:
    """A drop-in holds containers and discover only: a key of the main file is refused
    naming where it goes; an unknown key gets a suggestion; both with file and line, and
    with the problems of the containers beside them, all at once."""
    dropin = admin(
        main,
        "bad.yaml",
        "containers:\n  - {name: x, kind: comfyui, host: h, ssh: {prot: 1}}\n"
        "media_root: /elsewhere\ncontainrs: []\n",
    )
    assert issues_of(main) == [
        f"{dropin}:2: containers[0].ssh.prot: unknown key (did you mean 'port'?)",
        f"{dropin}:3: media_root: not allowed in a drop-in, which holds only containers and"
        f" discover (media_root goes in {main})",
        f"{dropin}:4: containrs: unknown key (did you mean 'containers'?)",
    ]


def test_yaml_errors_in_dropins_name_file_and_line_with_every_other_problem(
    main: Path, key: Path
) -> None:
    """A drop-in that is not YAML, not a mapping or not UTF-8 is reported with its file
    and line, together with the main file's problems and the other drop-ins'."""
    main.write_text(main.read_text() + "log: {levle: info}\n")
    broken = admin(main, "a.yaml", "containers:\n  - {name: x, kind: comfyui\n")
    listed = admin(main, "b.yaml", "- containers\n")
    binary = state(main, "c.yaml", "")
    binary.write_bytes(b"containers: \xff\n")
    worse = state(
        main, "d.yaml", "containers:\n  - {name: y, kind: comfyui, host: h, folderz: []}\n"
    )
    assert issues_of(main) == [
        f"{main}:8: log.levle: unknown key (did you mean 'level'?)",
        f"{broken}:3: (file): invalid YAML: expected ',' or '}}', but got '<stream end>'",
        f"{listed}:1: (file): the drop-in must be a YAML mapping",
        f"{binary}:1: (file): cannot read the drop-in: not UTF-8 text",
        f"{worse}:2: containers[0].folderz: unknown key (did you mean 'folders'?)",
    ]


def test_hidden_and_other_files_are_ignored_missing_folders_are_fine(main: Path) -> None:
    """Only `*.yaml` that are not hidden are read (a writer's temporary `.NAME.yaml.tmp`, a
    `.yml`, a backup `x.yaml~` or `x.yaml.dpkg-old` are not); folders that do not exist hold
    no drop-ins."""
    assert load_config(main).dropins == ()
    for name in (".hidden.yaml", ".x.yaml.tmp", "x.yml", "x.yaml~", "x.yaml.dpkg-old", ".yaml"):
        admin(main, name, "not: [valid\n")
        state(main, name, "not: [valid\n")
    kept = admin(main, "ok.yaml", "containers: []\n")
    assert load_config(main).dropins == (kept,)


def test_an_unreadable_dropin_or_folder_is_an_error(main: Path, tmp_path: Path) -> None:
    """A drop-in that cannot be read (a dangling link, a folder) and a drop-in folder that
    is not a folder are errors naming them, not skipped."""
    folder = main.parent / "forge-sync.d"
    folder.mkdir()
    (folder / "gone.yaml").symlink_to(tmp_path / "nowhere.yaml")
    (folder / "dir.yaml").mkdir()
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "containers.d").write_text("a file, not a folder")
    assert issues_of(main) == [
        f"{folder}/dir.yaml:1: (file): cannot read the drop-in: Is a directory",
        f"{folder}/gone.yaml:1: (file): cannot read the drop-in: No such file or directory",
        f"{tmp_path}/state/containers.d:1: (folder): cannot read the drop-in folder: Not a"
        " directory",
    ]


def test_dropin_paths_and_who_wrote_them(main: Path) -> None:
    """`dropin_folder`/`dropin_path` name the daemon's drop-ins; `written_by_daemon` tells
    them from the main file's and an admin's containers."""
    admin(main, "a.yaml", "containers:\n  - {name: admin-a, kind: comfyui, host: h}\n")
    config = load_config(main)
    path = dropin_path(config, "state-b")
    assert dropin_folder(config) == main.parent.parent / "state" / "containers.d"
    assert path == dropin_folder(config) / "state-b.yaml"
    assert admin_dropin_folder(main) == main.parent / "forge-sync.d"
    path.parent.mkdir(parents=True)
    path.write_text("containers:\n  - {name: state-b, kind: comfyui, host: h}\n")
    config = load_config(main)
    owners = {c.name: written_by_daemon(config, c) for c in config.containers}
    assert owners == {"main-a": False, "admin-a": False, "state-b": True}


def test_a_pending_dropin_is_checked_before_it_is_written(main: Path) -> None:
    """`load_config(path, pending={drop-in path: text})` reads the text as if it were
    written there (the state folder need not exist yet; an existing file's text is
    replaced), so `forge-syncctl add` can refuse a drop-in the next reload would refuse,
    and nothing is written."""
    config = load_config(main)
    new = dropin_path(config, "box-b")
    good = load_config(main, {new: "containers:\n  - {name: box-b, kind: forge, host: h}\n"})
    assert [c.name for c in good.containers] == ["main-a", "box-b"]
    assert good.dropins == (new,) and written_by_daemon(good, good.containers[1])
    clash = dropin_path(config, "main-a")
    with pytest.raises(ConfigError) as caught:
        load_config(main, {clash: "containers:\n  - {name: main-a, kind: forge, host: h}\n"})
    assert [str(i) for i in caught.value.issues] == [
        f"{clash}:2: containers[0].name: duplicate container name 'main-a' (first at {main}:7)"
    ]
    assert not dropin_folder(config).exists()
    on_disk = admin(main, "a.yaml", "containers: [{name: main-a, kind: forge, host: h}]\n")
    assert load_config(main, {on_disk: "containers: []\n"}).dropins == (on_disk,)


def test_the_source_is_not_part_of_a_containers_equality(main: Path) -> None:
    """A container moved unchanged from one file to another compares equal (a reload does
    not restart it), though its source differs."""
    before = load_config(main).containers[0]
    main.write_text(main.read_text().replace("containers:\n  - {name: main-a", "containers: []\n#"))
    state(main, "main-a.yaml", "containers:\n  - {name: main-a, kind: comfyui, host: h1}\n")
    after = load_config(main).containers[0]
    assert after == before and after.source != before.source
    assert dataclasses.replace(after, host="h9") != before


@pytest.mark.parametrize("containers", ["containers: []\n", "containers:\n", ""])
def test_a_config_without_containers_is_valid(tmp_path: Path, containers: str) -> None:
    """No `containers:`, an empty list or an empty key: valid, and `--check-config` exits
    0 saying so and naming the drop-in folders it looked in."""
    path = tmp_path / "forge-sync.yaml"
    path.write_text(f"media_root: {tmp_path}/media\nstate_dir: {tmp_path}/state\n{containers}")
    assert load_config(path).containers == ()
    result = forge_syncd("--check-config", "--config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"config {path}: OK, 0 containers",
        f"media_root {tmp_path}/media   state_dir {tmp_path}/state",
        "library: files 0640, folders 2750, group the daemon's group",
        f"read file {path}: 0 containers",
        f"drop-ins: none in {tmp_path}/forge-sync.d/ or {tmp_path}/state/containers.d/",
        NO_CONTAINERS,
    ]
    assert NO_CONTAINERS == "no containers configured: forge-syncctl add NAME ssh://user@host:port"


def test_check_config_lists_the_files_read(main: Path) -> None:
    """`--check-config` says which files it read and how many containers each defined."""
    a = admin(main, "a.yaml", "containers:\n  - {name: admin-a, kind: comfyui, host: h}\n")
    s = state(main, "s.yaml", "containers: []\n")
    result = forge_syncd("--check-config", "--config", str(main))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"config {main}: OK, 2 containers"
    assert lines[3:6] == [
        f"read file {main}: 1 container",
        f"read drop-in {a}: 1 container",
        f"read drop-in {s}: 0 containers",
    ]
    assert NO_CONTAINERS not in result.stdout


def test_check_config_reports_dropin_errors_with_exit_2(main: Path) -> None:
    """`--check-config` with a broken drop-in exits 2 with file:line on stderr."""
    dropin = admin(main, "a.yaml", "ingest: []\n")
    result = forge_syncd("--check-config", "--config", str(main))
    assert result.returncode == 2
    assert f"{dropin}:1: ingest: not allowed in a drop-in" in result.stderr
    assert "Traceback" not in result.stderr


dropin_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(["containers", "discover", "name", "kind", "host", "media_root"])
            | st.text(max_size=4),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(st.one_of(dropin_values.map(lambda v: yaml.safe_dump(v)), st.text(max_size=120)))
def test_random_dropins_only_ever_raise_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """No drop-in, however odd, makes loading fail with anything but ConfigError, and
    every problem it has names its file."""
    work = tmp_path_factory.mktemp("fuzz")
    main = work / "forge-sync.yaml"
    main.write_text(f"media_root: {work}/m\nstate_dir: {work}/s\n")
    dropin = work / "forge-sync.d" / "x.yaml"
    dropin.parent.mkdir()
    dropin.write_text(text)
    try:
        load_config(main)
    except ConfigError as exc:
        assert all(str(issue).startswith(f"{dropin}:") for issue in exc.issues)
