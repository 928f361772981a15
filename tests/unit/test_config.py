"""Config loading: the sample, presets, deep merge, and every kind of mistake reported
with file, line, key path and a suggestion."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.config import ConfigError, LibraryConfig, Schedule, load_config
from forge_syncd.config.bwlimit import parse_bwlimit
from forge_syncd.config.units import parse_duration, parse_rate, parse_size
from tests.support.cli import forge_syncd

SAMPLE = Path(__file__).resolve().parents[2] / "etc" / "forge-sync.yaml"


@pytest.fixture
def key(tmp_path: Path) -> Path:
    """A private file standing in for a key (its content is not checked at load)."""
    path = tmp_path / "id_ed25519"
    path.write_text("not checked here, only readable\n")
    path.chmod(0o600)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "forge-sync.yaml"
    path.write_text(text)
    return path


def test_sample_config_is_valid(tmp_path: Path, key: Path) -> None:
    """etc/forge-sync.yaml (the packaged conffile) loads and means what it says: no
    container (a fresh install is healthy), known_hosts under the state folder (the daemon
    adds keys there; /etc is read-only to it), the socket's and the library's groups."""
    config = load_config(write(tmp_path, SAMPLE.read_text()))
    assert config.containers == () and config.discover == () and config.dropins == ()
    assert config.control.group == "forge-syncctl"
    assert config.library == LibraryConfig(None, 0o640, 0o2750, "auto")
    assert config.metrics.listen == ("127.0.0.1", 9721)
    assert str(config.log.file) == "/var/log/forge-sync/forge-syncd.jsonl"
    defaults = json.loads(config.defaults_json)
    assert defaults["ssh"]["known_hosts"] == "/var/lib/forge-sync/known_hosts"
    assert defaults["ssh"]["identity_file"] == "/etc/forge-sync/id_ed25519"


def commented_block(text: str, first: str, prefix: str) -> str:
    """Return the commented lines of the sample from the line `first` on, while they start
    with `prefix`, uncommented (`prefix` removed, the indentation under it kept)."""
    lines = text.splitlines()
    start = lines.index(first)
    block = []
    for line in lines[start:]:
        if not line.startswith(prefix):
            break
        block.append(line[len(prefix) :])
    return "\n".join(block) + "\n"


def test_sample_config_examples_are_valid(tmp_path: Path, key: Path) -> None:
    """The sample's commented examples work once uncommented: its containers in place of
    `containers: []`, and its drop-in in forge-sync.d/ beside it."""
    text = SAMPLE.read_text().replace("/etc/forge-sync/id_ed25519", str(key))
    containers = commented_block(text, "# containers:", "# ")
    path = write(tmp_path, text.replace("\ncontainers: []\n", "\n" + containers))
    dropin = tmp_path / "forge-sync.d" / "comfy-2.yaml"
    dropin.parent.mkdir()
    dropin.write_text(commented_block(text, "#   containers:", "#   "))
    config = load_config(path)
    forge, comfy, comfy2 = config.containers
    assert forge.root == "/workspace/stable-diffusion-webui/outputs"
    assert forge.folders[0] == "txt2img-images" and len(forge.folders) == 5
    assert forge.ssh.port == 2222 and forge.cleanup.enabled and not comfy.cleanup.enabled
    assert comfy.root == "/workspace/ComfyUI/output" and comfy.folders == ()
    assert comfy.sync.schedule == Schedule(interval_s=300.0)
    assert forge.sync.max_file_size == 50 * 1024**3
    assert (comfy2.name, comfy2.ssh.port, comfy2.source) == ("comfy-2", 2224, str(dropin))
    assert {c.transport for c in config.containers} == {"ssh"}  # the default
    assert comfy2.ssh.known_hosts == Path("/var/lib/forge-sync/known_hosts")
    assert config.dropins == (dropin,)


def test_defaults_deep_merge_and_schedule_override(tmp_path: Path, key: Path) -> None:
    """Container keys override defaults key by key; a container's schedule replaces the
    default interval; sinks keep their options."""
    config = load_config(
        write(
            tmp_path,
            f"""
media_root: /m
defaults:
  ssh: {{identity_file: {key}, user: forge, port: 2200}}
  sync: {{interval: 10m, verify: sha256}}
containers:
  - {{name: a, kind: generic, host: h, root: /data/, ssh: {{port: 22}}, sync: {{schedule: "0 * * * *"}}}}
  - {{name: b, kind: comfyui, host: h2, sync: {{bwlimit: 20MiB/s}}}}
ingest:
  - {{name: hook, type: exec, command: [/bin/true, "-x"]}}
""",
        )
    )
    a, b = config.containers
    assert (a.ssh.user, a.ssh.port, b.ssh.port) == ("forge", 22, 2200)
    assert a.sync.schedule == Schedule(cron="0 * * * *") and a.sync.verify == "sha256"
    assert b.sync.schedule == Schedule(interval_s=600.0) and b.sync.bwlimit == parse_bwlimit(
        "20MiB/s"
    )
    assert a.root == "/data"
    assert config.ingest[0].options == {"command": ("/bin/true", "-x"), "timeout_s": 30.0}


BASE = """media_root: /m
defaults:
  ssh: {identity_file: KEY}
containers:
  - name: forge-a
    kind: forge
    host: 10.0.0.1
"""

BAD_CONFIGS = [
    ("    ssh: {prot: 2222}\n", "8: containers[0].ssh.prot: unknown key (did you mean 'port'?)"),
    ("    ssh: {port: abc}\n", "8: containers[0].ssh.port: expected an integer, got a string"),
    ("    ssh: {port: 70000}\n", "8: containers[0].ssh.port: must be at most 65535"),
    (
        "    sync: {interval: 5 minutes}\n",
        "8: containers[0].sync.interval: expected a duration like 30s, 5m, 1h or 2d",
    ),
    (
        "    sync: {max_file_size: 5GB}\n",
        "8: containers[0].sync.max_file_size: expected a size like 500MiB or 50GiB",
    ),
    (
        "    sync: {verify: md5}\n",
        "8: containers[0].sync.verify: must be one of size, sha256, not 'md5'",
    ),
    (
        "    sync: {schedule: '61 * * * *'}\n",
        "8: containers[0].sync.schedule: not a valid crontab line",
    ),
    (
        "    sync: {interval: 5m, schedule: '* * * * *'}\n",
        "8: containers[0].sync.schedule: set either interval or schedule, not both",
    ),
    (
        "    cleanup: {enabled: yes please}\n",
        "8: containers[0].cleanup.enabled: expected true or false, got 'yes please'",
    ),
    (
        "    root: relative/path\n",
        "8: containers[0].root: must be an absolute path, not 'relative/path'",
    ),
    ("    folders: [../etc]\n", "8: containers[0].folders[0]: must be a folder under root"),
    ("    kind: forge\n", "8: containers[0].kind: duplicate key (first at line 6)"),
    (
        "  - {name: forge-a, kind: comfyui, host: b}\n",
        "8: containers[1].name: duplicate container name 'forge-a' (first at line 5)",
    ),
    ("  - {name: c, kind: comfyui}\n", "8: containers[1].host: required key is missing"),
    (
        "  - {name: c, kind: generic, host: b}\n",
        "8: containers[1].root: required for kind 'generic' (no preset root)",
    ),
    (
        "  - {name: Bad Name, kind: comfyui, host: b}\n",
        "8: containers[1].name: 'Bad Name' must match [a-z0-9][a-z0-9_-]*",
    ),
    ("metrics: {listen: 9721}\n", "8: metrics.listen: expected a non-empty string, got an integer"),
    ("metrics: {listen: localhost}\n", "8: metrics.listen: expected host:port like"),
    ("log: {levle: info}\n", "8: log.levle: unknown key (did you mean 'level'?)"),
    ("ingest:\n  - {name: w, type: webhook}\n", "9: ingest[0].url: required key is missing"),
    ("ingest:\n  - {name: w, type: kafka}\n", "9: ingest[0].type: must be one of jsonl, exec"),
    (
        "ingest:\n  - {name: w, type: webhook, url: 'ftp://x'}\n",
        "9: ingest[0].url: expected an http:// or https:// URL",
    ),
    ("containerz: []\n", "8: containerz: unknown key (did you mean 'containers'?)"),
    ("    ssh: {port: [1\n", "9: (file): invalid YAML"),
    (
        "library: {file_mode: 0640}\n",
        '8: library.file_mode: expected an octal string like "0640" (quoted: YAML reads 0640'
        " unquoted as a number), got an integer",
    ),
    (
        'library: {dir_mode: "2759"}\n',
        "8: library.dir_mode: expected an octal mode of 3 or 4 digits like \"0640\", not '2759'",
    ),
    (
        'library: {file_mode: "4755"}\n',
        "8: library.file_mode: '4755': a file mode may not set bits 4000",
    ),
    (
        'library: {dir_mode: "4750"}\n',
        "8: library.dir_mode: '4750': a folder mode may not set bits 4000",
    ),
    (
        'library: {file_mode: "0440"}\n',
        "8: library.file_mode: '0440': the daemon's own user needs 0600 (a file mode)",
    ),
    (
        'library: {dir_mode: "2550"}\n',
        "8: library.dir_mode: '2550': the daemon's own user needs 0700 (a folder mode)",
    ),
    (
        "library: {dedupe: copy}\n",
        "8: library.dedupe: must be one of auto, hardlink, off, not 'copy'",
    ),
    (
        "library: {group: no-such-group-xyz}\n",
        "8: library.group: no group 'no-such-group-xyz' on this system (create it: groupadd",
    ),
    ("library: {grup: media}\n", "8: library.grup: unknown key (did you mean 'group'?)"),
    (
        "    transport: sftp\n",
        "8: containers[0].transport: must be one of ssh, local, docker, not 'sftp'",
    ),
    (
        "    transport: [ssh]\n",
        "8: containers[0].transport: must be one of ssh, local, docker, not ['ssh']",
    ),
    ('control: {group: "bad group"}\n', "8: control.group: 'bad group' is not a group name"),
    ("control: {group: 5}\n", "8: control.group: expected a non-empty string, got an integer"),
]


@pytest.mark.parametrize(("extra", "expected"), BAD_CONFIGS)
def test_bad_config_names_file_line_and_key(
    tmp_path: Path, key: Path, extra: str, expected: str
) -> None:
    """Each mistake is reported as file:line: key.path: message, with a suggestion."""
    path = write(tmp_path, BASE.replace("KEY", str(key)) + extra)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert f"{path}:{expected}" in str(caught.value)


def test_library_and_control_groups_and_modes_are_read(tmp_path: Path, key: Path) -> None:
    """`library:` modes are octal strings kept as numbers, its group one of the system's;
    `control.group` may be null (the daemon's own group)."""
    path = write(
        tmp_path,
        BASE.replace("KEY", str(key))
        + 'library: {group: root, file_mode: "660", dir_mode: "3770", dedupe: off}\n'
        + "control: {group: null}\n",
    )
    config = load_config(path)
    assert config.library == LibraryConfig("root", 0o660, 0o3770, "off")
    assert config.control.group is None


def test_unreadable_identity_file_is_reported_where_it_was_set(tmp_path: Path) -> None:
    """A missing identity file set in defaults is reported once, at the defaults line."""
    path = write(
        tmp_path,
        BASE.replace("KEY", "/nonexistent/key") + "  - {name: b, kind: comfyui, host: h}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:3: defaults.ssh.identity_file: identity file /nonexistent/key does not exist "
        "or is not readable"
    ]


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        (0o644, "others can read it"),
        (0o602, "others can write it"),
        (0o620, "its group can write it"),
        (0o666, "others can read it, others can write it, its group can write it"),
    ],
)
def test_identity_file_open_to_others_is_refused_with_file_and_mode(
    tmp_path: Path, key: Path, mode: int, why: str
) -> None:
    """Regression (issue 14, item 8): a private key that others can read or write, or its
    group can write, passed validation. Now it is refused as OpenSSH refuses an unprotected
    private key file, naming the config line, the key path, the key file and its mode."""
    key.chmod(mode)
    path = write(tmp_path, BASE.replace("KEY", str(key)))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [str(i) for i in caught.value.issues] == [
        f"{path}:3: defaults.ssh.identity_file: identity file {key} has mode {mode:04o} ({why}):"
        " unprotected private key file, refused as OpenSSH does; chmod 600 (or 640 to share"
        " it with a group)"
    ]


@pytest.mark.parametrize("mode", [0o600, 0o400, 0o640, 0o440])
def test_identity_file_private_or_group_readable_is_accepted(
    tmp_path: Path, key: Path, mode: int
) -> None:
    """A key only its owner can write and only its owner and group can read loads (0640 lets
    root own the key and the daemon's group read it)."""
    key.chmod(mode)
    config = load_config(write(tmp_path, BASE.replace("KEY", str(key))))
    assert config.containers[0].ssh.identity_file == key


def test_world_readable_key_fails_check_config_with_exit_2(tmp_path: Path, key: Path) -> None:
    """`forge-syncd --check-config` on a config whose key is world-readable exits 2 and says
    file:line: key path, the key file and its mode on stderr."""
    key.chmod(0o644)
    path = write(tmp_path, BASE.replace("KEY", str(key)))
    result = forge_syncd("--check-config", "--config", str(path))
    assert result.returncode == 2
    assert (
        f"{path}:3: defaults.ssh.identity_file: identity file {key} has mode 0644" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_transport_ssh_is_the_default_and_may_be_written(tmp_path: Path, key: Path) -> None:
    """`transport:` (SPEC round 3) is `ssh` when left out and when written."""
    text = BASE.replace("KEY", str(key)) + "  - {name: b, kind: comfyui, host: h, transport: ssh}\n"
    a, b = load_config(write(tmp_path, text)).containers
    assert (a.transport, b.transport) == ("ssh", "ssh")


def test_transport_docker_takes_container_and_docker_keys_and_no_host_nor_ssh(
    tmp_path: Path, key: Path
) -> None:
    """`transport: docker` (SPEC round 3) loads with `container:` (default: the name) and
    `docker: {host, user}`; `host` or `ssh:` given to it, `container:`/`docker:` given to
    another transport, a malformed `docker.host` (an ssh:// one with a path, a tcp:// one) and
    an unknown `docker:` key are each named at their file, line and key (main file or drop-in), exit 2, no traceback."""
    entry = (
        "  - {name: home-comfy, transport: docker, container: comfyui, kind: comfyui,\n"
        '     docker: {host: "unix:///run/docker.sock", user: root}}\n'
        "  - {name: plain, transport: docker, kind: comfyui}\n"
    )
    config = load_config(write(tmp_path, BASE.replace("KEY", str(key)) + entry))
    comfy, plain = config.containers[1], config.containers[2]
    assert (comfy.transport, comfy.docker.container, comfy.docker.host, comfy.docker.user) == (
        "docker",
        "comfyui",
        "unix:///run/docker.sock",
        "root",
    )
    assert (plain.docker.container, plain.docker.host) == ("", "unix:///run/docker.sock")
    far = "  - {name: far, transport: docker, kind: comfyui, docker: {host: 'ssh://me@gpu:2222'}}\n"
    loaded = load_config(write(tmp_path, BASE.replace("KEY", str(key)) + entry + far))
    assert loaded.containers[3].docker.host == "ssh://me@gpu:2222"
    bad = (
        "  - {name: b, transport: docker, kind: comfyui, host: h, ssh: {port: 22},\n"
        '     docker: {host: "ssh://u@gpu/x", usr: x}}\n'
        "  - {name: c, kind: comfyui, host: h, container: x, docker: {host: tcp://h}}\n"
    )
    dropin = tmp_path / "forge-sync.d" / "b.yaml"
    dropin.parent.mkdir()
    dropin.write_text("containers:\n" + bad)
    result = forge_syncd(
        "--check-config", "--config", str(write(tmp_path, BASE.replace("KEY", str(key))))
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    for line in (
        f"{dropin}:2: containers[0].host: does not apply to transport 'docker' (the engine is docker.host)",
        f"{dropin}:2: containers[0].ssh: does not apply to transport 'docker' (the engine is docker.host)",
        f"{dropin}:3: containers[0].docker.usr: unknown key (did you mean 'user'?)",
        f"{dropin}:4: containers[1].container: applies only to transport 'docker' (this one is 'ssh')",
        f"{dropin}:4: containers[1].docker: applies only to transport 'docker' (this one is 'ssh')",
    ):
        assert line in lines, result.stderr
    assert any(
        line.startswith(
            f"{dropin}:3: containers[0].docker.host: 'ssh://u@gpu/x': 'gpu/x' is not a host name"
        )
        for line in lines
    ), result.stderr


def test_transport_local_takes_a_root_and_no_host_nor_ssh(tmp_path: Path, key: Path) -> None:
    """`transport: local` (SPEC round 3) loads with `root` alone (the kind's folders under
    it, no identity file needed); `host` or `ssh:` given to it, or a missing `root`, are
    each named at their file, line and key, with exit 2 and no traceback; an ssh container
    still needs its host."""
    entry = "  - {name: nas-forge, transport: local, kind: forge, root: /mnt/forge/outputs}\n"
    config = load_config(write(tmp_path, BASE.replace("KEY", str(key)) + entry))
    local = config.containers[1]
    assert (local.transport, local.root, local.host) == ("local", "/mnt/forge/outputs", "")
    assert "txt2img-images" in local.folders
    bad = (
        "  - {name: b, transport: local, kind: comfyui, host: h,\n"
        "     ssh: {port: 22}}\n"
        "  - {name: c, kind: comfyui}\n"
    )
    path = write(tmp_path, BASE.replace("KEY", str(key)) + bad)
    result = forge_syncd("--check-config", "--config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    not_for_local = "does not apply to transport 'local' (its files are in root, on this machine)"
    assert f"{path}:8: containers[1].host: {not_for_local}" in lines
    assert f"{path}:9: containers[1].ssh: {not_for_local}" in lines
    assert (
        f"{path}:8: containers[1].root: required for transport 'local' (the source folder)" in lines
    )
    assert f"{path}:10: containers[2].host: required key is missing" in lines


def test_all_errors_are_reported_at_once(tmp_path: Path, key: Path) -> None:
    """Three mistakes in one file give three issues, in line order."""
    path = write(
        tmp_path,
        BASE.replace("KEY", str(key))
        + "    ssh: {prot: 1}\n    sync: {transfers: 0}\nlog: {level: loud}\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [issue.line for issue in caught.value.issues] == [8, 9, 10]


def test_missing_file_and_non_mapping(tmp_path: Path) -> None:
    """A missing file and a document that is not a mapping are config errors too."""
    with pytest.raises(ConfigError, match="cannot read the config"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_config(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(ConfigError, match="media_root: required key is missing"):
        load_config(write(tmp_path, "state_dir: /x\n"))


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(30, 30.0), ("30s", 30.0), ("5m", 300.0), ("1.5h", 5400.0), ("2d", 172800.0)],
)
def test_durations(text: object, seconds: float) -> None:
    """Durations accept integers (seconds) and <number><unit>."""
    assert parse_duration(text) == seconds


def test_sizes_and_rates() -> None:
    """Sizes use binary units; rates may end in /s; nonsense is refused."""
    assert parse_size("50GiB") == 50 * 1024**3
    assert parse_size(100) == 100
    assert parse_rate("20MiB/s") == 20 * 1024**2
    for bad in ("5GB", "-1", True, "", "MiB"):
        with pytest.raises(ValueError):
            parse_size(bad)
    with pytest.raises(ValueError):
        parse_duration("-5s")


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "media_root",
                    "containers",
                    "name",
                    "kind",
                    "host",
                    "ssh",
                    "sync",
                    "port",
                    "interval",
                    "ingest",
                    "type",
                    "defaults",
                    "x",
                ]
            )
            | st.text(max_size=5),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(yaml_values.map(lambda v: yaml.safe_dump(v)), st.text(max_size=200)))
def test_random_documents_only_ever_raise_config_error(
    tmp_path_factory: pytest.TempPathFactory, text: str
) -> None:
    """No YAML document, however odd, makes the loader fail with anything but ConfigError."""
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(text)
    try:
        load_config(path)
    except ConfigError as exc:
        assert all(str(issue).startswith(f"{path}:") for issue in exc.issues)


def test_connections_is_auto_or_one_to_eight(tmp_path: Path, key: Path) -> None:
    """`sync.connections` (SPEC round 3): `auto` (0) by default and when written, a number
    from 1 to 8 as given (a container's own value wins over `defaults:`), anything else an
    error naming the key."""
    text = BASE.replace("KEY", str(key)) + (
        "  - {name: b, kind: comfyui, host: h, sync: {connections: auto}}\n"
        "  - {name: c, kind: comfyui, host: h, sync: {connections: 8}}\n"
    )
    a, b, c = load_config(write(tmp_path, text)).containers
    assert (a.sync.connections, b.sync.connections, c.sync.connections) == (0, 0, 8)
    for bad in ("9", "0", "many", "2.5"):
        wrong = BASE.replace("KEY", str(key)) + (
            f"  - {{name: b, kind: comfyui, host: h, sync: {{connections: {bad}}}}}\n"
        )
        with pytest.raises(ConfigError, match=r"containers\[1\]\.sync\.connections"):
            load_config(write(tmp_path, wrong))
