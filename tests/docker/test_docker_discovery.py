"""The `docker` discovery source against a real engine (the private test dockerd): running
containers carrying the label are found, the label's value is their kind, their Docker name
gives the forge-syncd name, and a value that is no kind is one warning naming the container."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from forge_syncd.config.loader import load_config
from forge_syncd.service.discover.sources import discover
from tests.support.docker import Container, DockerEngine


def test_running_labelled_containers_are_found_with_their_kind(
    tmp_path: Path, docker_engine: DockerEngine, docker_run: Callable[..., Container]
) -> None:
    """Of four containers, the running one labelled `comfyui` is found (transport docker,
    `container:` its Docker name, the forge-syncd name made of it, the source's root
    applied); the one labelled `bogus` is skipped with one warning naming it; a stopped
    labelled one and an unlabelled one are not found at all."""
    image = docker_engine.busybox_image()
    label = "forge-sync.kind"
    run = docker_run
    run(image, name=f"Comfy.Home_{tmp_path.name[-6:]}", labels={label: "comfyui"})
    bogus = run(image, labels={label: "bogus"})
    run(image, labels={label: "forge"}).stop()
    run(image)
    config = tmp_path / "forge-sync.yaml"
    config.write_text(
        f"""\
media_root: {tmp_path}/media
state_dir: {tmp_path}/state
discover:
  - {{type: docker, host: "{docker_engine.host}", label: {label}, root: /data}}
"""
    )
    loaded = load_config(config)
    (source,) = loaded.discover
    found = discover(source, loaded)
    (container,) = found.containers
    docker_name = f"Comfy.Home_{tmp_path.name[-6:]}"
    assert container.name == docker_name.lower().replace(".", "-")
    assert (container.transport, container.kind, container.root) == ("docker", "comfyui", "/data")
    assert (container.docker.container, container.docker.host) == (docker_name, docker_engine.host)
    assert found.warnings == [
        f"container {bogus.name}: label forge-sync.kind='bogus' is not a kind"
        " (forge, comfyui, generic): skipped"
    ]
    assert found.problems == []
