"""`forge-syncctl add`'s pure parts: the TARGET, the detection probe's output read as
hostile, the choice of kind and root, known_hosts written as OpenSSH writes it, the drop-in."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import paramiko
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from forge_syncd.onboard.detect import (
    Choice,
    Found,
    NoChoice,
    choose,
    detect_script,
    parse_detection,
)
from forge_syncd.onboard.dropin import dropin_text
from forge_syncd.onboard.target import (
    DockerTarget,
    LocalTarget,
    SshTarget,
    TargetError,
    parse_target,
)
from forge_syncd.remote.errors import HostKeyError
from forge_syncd.transports.ssh.hostkeys import check_host_key, fingerprint
from forge_syncd.transports.ssh.trust import known_keys, trust_host_key
from tests.support.sshd import make_key


@pytest.mark.parametrize(
    ("text", "target"),
    [
        ("ssh://root@1.2.3.4:40022", SshTarget("1.2.3.4", 40022, "root")),
        ("ssh://box.example", SshTarget("box.example", 22, None)),
        ("ssh://ubuntu@box.example/", SshTarget("box.example", 22, "ubuntu")),
        ("ssh://root@[2001:db8::1]:2222", SshTarget("2001:db8::1", 2222, "root")),
        ("ssh://[::1]", SshTarget("::1", 22, None)),
        ("docker://comfyui", DockerTarget("comfyui")),
        ("local:/mnt/forge/outputs/", LocalTarget("/mnt/forge/outputs")),
    ],
)
def test_targets_parse(text: str, target: SshTarget | DockerTarget | LocalTarget) -> None:
    """ssh:// targets give host, port (22 by default) and user (None when not given);
    docker:// the container; local: the folder (without a trailing slash)."""
    assert parse_target(text) == target


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("docker://../x", "is not a Docker container name or id"),
        ("docker://", "is not a Docker container name or id"),
        ("local:mnt/x", "takes an absolute path"),
        ("local:/mnt/../etc", "without //, . or .."),
        ("local:/mnt/x\n", "control character"),
        ("root@1.2.3.4", "is not a target"),
        ("http://1.2.3.4", "is not a target"),
        ("ssh://root@-oProxyCommand=x", "is not a host name"),
        ("ssh://root@1.2.3.4:0", "is not a port"),
        ("ssh://root@1.2.3.4:99999", "is not a port"),
        ("ssh://ro ot@1.2.3.4", "is not a user name"),
        ("ssh://[1.2.3.4", "is not [IPv6 address]:port"),
        ("ssh://" + "a" * 600, "over 512 characters"),
    ],
)
def test_other_targets_are_refused_clearly(text: str, said: str) -> None:
    """A docker:// target that is no container name, a local: path that is relative, has
    `..` or a control character, and anything that is not one of the three forms is
    refused saying what is expected."""
    with pytest.raises(TargetError) as caught:
        parse_target(text)
    assert said in str(caught.value)


def _hex(text: str | bytes) -> str:
    return (text.encode() if isinstance(text, str) else text).hex()


def test_detection_reads_folders_once_and_drops_what_it_cannot_trust() -> None:
    """Folder records become Found entries (a folder seen twice, by inode, once); a path that
    is relative, not UTF-8, holds a control character or is too long is dropped with a note;
    a record with a garbled count, an unknown front end or too many words is not used."""
    not_utf8 = _hex(b"/x/\xff/SwarmUI/Output")
    escape = _hex("/x/\x1b[31m/SwarmUI/Output")
    lines = [
        f"home {_hex('/root')}",
        f"dir ComfyUI/output {_hex('/workspace/ComfyUI/output')} 1:10 3 300",
        f"dir ComfyUI/output {_hex('/root/ComfyUI/output')} 1:10 3 300",  # a symlink
        f"dir Fooocus/outputs {_hex('relative/Fooocus/outputs')} 1:11 1 1",
        f"dir SwarmUI/Output {not_utf8} 1:12 1 1",
        f"dir SwarmUI/Output {escape} 1:13 1 1",
        f"dir SwarmUI/Output {_hex('/' + 'a' * 5000)} 1:14 1 1",
        f"dir Fooocus/outputs {_hex('/w/Fooocus/outputs')} 1:15 12e9 1",
        f"dir evil/outputs {_hex('/w/evil/outputs')} 1:16 1 1",
        f"dir invokeai/outputs/images {_hex('/root/invokeai/outputs/images')} 1:17 100001 7 x",
        f"dir invokeai/outputs/images {_hex('/root/invokeai/outputs/images')} 1:17 100001 7",
        "\x1b]0;title\x07garbage",
    ]
    detection = parse_detection("\n".join(lines).encode())
    assert detection.home == "/root"
    assert [(f.app, f.root, f.files, f.capped) for f in detection.found] == [
        ("ComfyUI", "/workspace/ComfyUI/output", 3, False),
        ("InvokeAI", "/root/invokeai/outputs/images", 100_000, True),
    ]
    notes = "\n".join(detection.notes)
    assert "not an absolute path" in notes
    assert "not UTF-8" in notes
    assert "control character (/x/\\x1b[31m/SwarmUI/Output)" in notes
    assert "over 4096 bytes" in notes
    assert "file count was not understood" in notes
    assert "named no known front end" in notes
    assert "not understood" in notes


def _proc(argv: list[bytes], cwd: str, out: str, counts: str = "2 20", pid: str = "41") -> str:
    args = b"".join(a + b"\0" for a in argv).hex()
    inode = f"1:{len(out)}"  # distinct folders in these tests have names of distinct lengths
    return f"proc {pid} {args} {_hex(cwd)} {_hex(out)} {inode} {counts}"


def test_comfyui_output_directory_from_the_process_arguments() -> None:
    """A ComfyUI process (main.py in a ComfyUI folder, or run from one) with
    --output-directory DIR or --output-directory=DIR gives that folder (relative: to its
    working folder); another program's --output-directory is ignored; a value the script
    did not read back intact (a newline in it) is dropped with a note."""
    lines = [
        _proc(
            [b"python3", b"/opt/ComfyUI/main.py", b"--output-directory", b"/data/out"],
            "/",
            "/data/out",
        ),
        _proc(
            [b"python", b"main.py", b"--output-directory=out"], "/srv/comfyui", "/srv/comfyui/out"
        ),
        _proc([b"python", b"main.py", b"--output-directory", b"/other"], "/srv/webapp", "/other"),
        _proc([b"python", b"ComfyUI/main.py", b"--output-directory", b"/a\nb"], "/", "/a", pid="7"),
    ]
    detection = parse_detection("\n".join(lines).encode())
    assert [(f.app, f.kind, f.root, f.via) for f in detection.found] == [
        ("ComfyUI", "comfyui", "/data/out", "process 41"),
        ("ComfyUI", "comfyui", "/srv/comfyui/out", "process 41"),
    ]
    assert detection.notes == ["ComfyUI process 7: its --output-directory was not read back intact"]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=4096))
def test_detection_never_fails_on_hostile_output(output: bytes) -> None:
    """Whatever a box prints, parsing gives a Detection (absolute, printable roots only)."""
    detection = parse_detection(output)
    for found in detection.found:
        assert found.root.startswith("/") and found.root.isprintable()


def test_detection_script_quotes_our_folders_and_splices_nothing_remote() -> None:
    """The probe's script holds our base folders quoted, reads each process's arguments
    only up to 32 KiB, and uses what it read only in quoted variables: no eval, no
    unquoted expansion of a remote value."""
    script = detect_script(("/workspace", "/tmp/it's here"))
    assert "'/tmp/it'\"'\"'s here'" in script
    assert "eval" not in script and "head -c 32768" in script
    unquoted = [
        line
        for line in script.splitlines()
        for variable in ("$o", "$w", "$d")
        if variable in line.replace(f'"{variable}"', "").replace(f"d={variable}", "")
        and not line.lstrip().startswith("case ")
    ]
    assert unquoted == []


def _found(app: str, kind: str, root: str) -> Found:
    return Found(app, kind, root, 1, 1, False, "folder")


def test_choose_picks_asks_or_says_what_to_pass() -> None:
    """One fitting folder is picked; several are asked about; --kind narrows, --root decides
    (its kind from a found folder, else generic); nothing found: --kind forge/comfyui take
    their preset root, auto and generic say to pass --kind and --root."""
    forge = _found("Forge", "forge", "/w/stable-diffusion-webui-forge/outputs")
    comfy = _found("ComfyUI", "comfyui", "/w/ComfyUI/output")
    assert choose([forge], "auto", None) == Choice("forge", forge.root)
    assert choose([forge, comfy], "auto", None) == [forge, comfy]
    assert choose([forge, comfy], "comfyui", None) == Choice("comfyui", comfy.root)
    assert choose([forge, comfy], "auto", comfy.root) == Choice("comfyui", comfy.root)
    assert choose([forge], "auto", "/elsewhere") == Choice("generic", "/elsewhere")
    assert choose([forge], "comfyui", "/elsewhere") == Choice("comfyui", "/elsewhere")
    assert choose([], "comfyui", None) == Choice("comfyui", "/workspace/ComfyUI/output")
    with pytest.raises(NoChoice, match="pass --kind and --root"):
        choose([], "auto", None)
    with pytest.raises(NoChoice, match="needs --root"):
        choose([forge], "generic", None)


@pytest.fixture
def host_key(tmp_path: Path) -> paramiko.PKey:
    make_key(tmp_path / "host", "host")
    return paramiko.PKey.from_path(tmp_path / "host")


def test_fingerprint_is_what_ssh_keygen_prints(tmp_path: Path, host_key: paramiko.PKey) -> None:
    """`fingerprint` equals `ssh-keygen -lf` of the same key (SHA256, unpadded base64)."""
    shown = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "host.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert fingerprint(host_key) == shown


def test_trusted_key_is_written_plain_with_the_port_form(
    tmp_path: Path, host_key: paramiko.PKey
) -> None:
    """A new known_hosts gets `[host]:port type key` (plain: the file hashes nothing), mode
    0644; the same key again writes nothing; the check connects with it afterwards."""
    path = tmp_path / "state" / "known_hosts"
    assert trust_host_key(path, "10.0.0.5", 40022, host_key) is True
    assert path.read_text() == f"[10.0.0.5]:40022 {host_key.get_name()} {host_key.get_base64()}\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert trust_host_key(path, "10.0.0.5", 40022, host_key) is False
    assert check_host_key(host_key, "10.0.0.5", 40022, path, "strict") is False
    trust_host_key(path, "box.example", 22, host_key)
    assert path.read_text().splitlines()[1].startswith("box.example ssh-ed25519 ")


def test_trusted_key_is_hashed_when_the_file_hashes_and_replaces_a_stale_key(
    tmp_path: Path, host_key: paramiko.PKey
) -> None:
    """In a file whose names are hashed (HashKnownHosts), the new line is hashed too; the
    host's old key line (hashed) is replaced, other lines and comments kept as written, the
    file's mode kept; OpenSSH's ssh-keygen -F finds the new key."""
    old = paramiko.Ed25519Key.from_path(_new_key(tmp_path / "old"))
    other = paramiko.HostKeys.hash_host("other.example")
    path = tmp_path / "known_hosts"
    stale = paramiko.HostKeys.hash_host("[10.0.0.5]:40022")
    path.write_text(
        f"# kept\n{other} ssh-ed25519 {old.get_base64()}\n{stale} ssh-ed25519 {old.get_base64()}\n"
    )
    path.chmod(0o640)
    assert [k.fingerprint for k in known_keys(path, "10.0.0.5", 40022)] == [fingerprint(old)]
    assert trust_host_key(path, "10.0.0.5", 40022, host_key) is True
    lines = path.read_text().splitlines()
    assert lines[:2] == ["# kept", f"{other} ssh-ed25519 {old.get_base64()}"]
    assert len(lines) == 3 and lines[2].startswith("|1|")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    found = subprocess.run(
        ["ssh-keygen", "-F", "[10.0.0.5]:40022", "-f", str(path)], capture_output=True, text=True
    ).stdout
    assert host_key.get_base64() in found and old.get_base64() not in found


def test_a_line_naming_the_host_among_others_is_left_to_a_person(
    tmp_path: Path, host_key: paramiko.PKey
) -> None:
    """A stale key on a line that names other hosts too is not rewritten (refused, file
    unchanged): removing it would drop the other hosts' key."""
    old = paramiko.Ed25519Key.from_path(_new_key(tmp_path / "old"))
    path = tmp_path / "known_hosts"
    text = f"box.example,10.0.0.5 ssh-ed25519 {old.get_base64()}\n"
    path.write_text(text)
    with pytest.raises(HostKeyError, match=r"line 1 names 10\.0\.0\.5 together with other hosts"):
        trust_host_key(path, "10.0.0.5", 22, host_key)
    assert path.read_text() == text


def test_trust_and_accept_new_never_lose_each_others_line(
    tmp_path: Path, host_key: paramiko.PKey
) -> None:
    """`add` rewrites known_hosts (rename) while `accept-new` appends to it: both under the
    same lock, which follows the renamed file, so every learned line is kept."""
    path = tmp_path / "known_hosts"
    keys = [paramiko.Ed25519Key.from_path(_new_key(tmp_path / f"k{i}")) for i in range(20)]
    errors: list[Exception] = []

    def learn(index: int) -> None:
        try:
            check_host_key(keys[index], f"10.0.1.{index}", 22, path, "accept-new")
        except Exception as exc:
            errors.append(exc)

    def trust(index: int) -> None:
        try:
            trust_host_key(path, f"10.0.2.{index}", 22, keys[index])
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f, args=(i,)) for i in range(20) for f in (learn, trust)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    names = {line.split()[0] for line in path.read_text().splitlines()}
    assert names == {f"10.0.{n}.{i}" for n in (1, 2) for i in range(20)}


def _new_key(path: Path) -> Path:
    make_key(path, "k")
    return path


def test_dropin_holds_the_one_container_in_the_loaders_form() -> None:
    """The drop-in is a comment (who wrote it, how to remove it) and `containers:` with the
    entry; odd roots are quoted by YAML, never breaking the file."""
    entry = {
        "name": "box1",
        "kind": "generic",
        "host": "10.0.0.5",
        "root": "/data/it's: #here",
        "ssh": {"user": "root", "port": 40022},
    }
    text = dropin_text(entry)
    assert text.startswith("# Written by `forge-syncctl add`")
    assert "`forge-syncctl remove box1`" in text
    assert yaml.safe_load(text) == {"containers": [entry]}
    assert "ssh: {user: root, port: 40022}" in text


def test_locked_file_is_reopened_after_a_rename(tmp_path: Path) -> None:
    """The known_hosts lock is taken on the file the path names now: one renamed over it
    while a writer waited is opened again (the append is not lost in the old file)."""
    from forge_syncd.transports.ssh.hostkeys import locked

    path = tmp_path / "known_hosts"
    path.write_text("a\n")
    with locked(path) as first:
        replacement = tmp_path / "new"
        replacement.write_text("b\n")
        os.rename(replacement, path)
        first.write("lost\n")
    with locked(path) as second:
        second.write("kept\n")
    assert path.read_text() == "b\nkept\n"


def test_add_reports_the_first_sync_not_the_live_reconciling_run_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """In live mode the watcher's reconciling run (0 files) follows the first sync at once,
    and status shows the latest run: `add` must report the first sync since it added the
    box (38 files), not the latest one, nor a run of an earlier box of that name."""
    from forge_syncd.cli.commands import onboard as addctl

    runs = [  # newest first, as `history` answers
        {
            "job": "sync",
            "started_at": "2026-12-07T10:00:05.000000Z",
            "finished_at": "x",
            "files": 0,
        },
        {
            "job": "sync",
            "started_at": "2026-12-07T10:00:02.000000Z",
            "finished_at": "x",
            "files": 38,
        },
        {
            "job": "sync",
            "started_at": "2026-12-01T09:00:00.000000Z",
            "finished_at": "x",
            "files": 7,
        },
    ]
    monkeypatch.setattr(addctl, "call", lambda *_args: {"runs": runs})
    first = addctl._oldest_sync_since_added(Path("/nowhere"), "box1", "2026-12-07T10:00:00.000000Z")
    assert first is not None and first["files"] == 38
