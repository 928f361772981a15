"""`forge-syncd`: the daemon, a one-shot pass (`--once`), `--backfill` and `--check-config`."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

from forge_syncd import __version__, logs
from forge_syncd.config import Config, ConfigError, ContainerConfig, load_config, summarize_config
from forge_syncd.library import dedupe, modes
from forge_syncd.library.statelock import StateBusy, StateLock, refusal
from forge_syncd.service import memory
from forge_syncd.transports import factory as transports

DEFAULT_CONFIG = Path("/etc/forge-sync.yaml")
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="forge-syncd",
        description="Pull generated media from Forge / ComfyUI containers over SSH.",
    )
    parser.add_argument(
        "--config", type=Path, help=f"config file (default: $FORGE_SYNC_CONFIG or {DEFAULT_CONFIG})"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check-config", action="store_true", help="validate the config and exit")
    mode.add_argument("--once", action="store_true", help="one sync pass per container, then exit")
    mode.add_argument(
        "--backfill",
        action="store_true",
        help="index the files already in the library into every catalog sink, then exit",
    )
    parser.add_argument(
        "--container",
        action="append",
        default=[],
        metavar="NAME",
        help="with --once or --backfill: only this container (repeatable)",
    )
    parser.add_argument(
        "--drain",
        action="store_true",
        help="with --once and one --container: sync, verify every file by sha256, report",
    )
    parser.add_argument("--purge", action="store_true", help="with --drain: delete verified files")
    parser.add_argument("--json", action="store_true", help="with --drain: the report as JSON")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="with --once: also a line for each file synced, purged or failed",
    )
    talk.add_argument(
        "-q", "--quiet", action="store_true", help="with --once: print nothing but errors"
    )
    parser.add_argument("--version", action="version", version=f"forge-syncd {__version__}")
    args = parser.parse_args(argv)
    if args.container and not (args.once or args.backfill):
        parser.error("--container goes with --once or --backfill")
    if args.drain and not (args.once and len(args.container) == 1):
        parser.error("--drain goes with --once and exactly one --container NAME")
    if (args.purge or args.json) and not args.drain:
        parser.error("--purge and --json go with --drain")
    if (args.verbose or args.quiet) and not args.once:
        parser.error("-v/--verbose and -q/--quiet go with --once")
    return args


def config_path(given: Path | None) -> Path:
    """Return the config path: --config, else $FORGE_SYNC_CONFIG, else the default."""
    if given is not None:
        return given
    env = os.environ.get("FORGE_SYNC_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def prepare_directories(config: Config) -> None:
    """Create the missing state folder (0750), library and container folders (with the
    library's modes and group); raise OSError if one is not writable."""
    config.state_dir.mkdir(mode=0o750, parents=True, exist_ok=True)
    config.media_root.parent.mkdir(parents=True, exist_ok=True)
    media_root = os.fsencode(config.media_root)
    modes.make_folders(media_root, media_root)
    folders = [config.state_dir, config.media_root]
    for container in config.containers:
        folders.append(config.media_root / container.name)
        modes.make_folders(media_root, os.fsencode(folders[-1]))
    for folder in folders:
        if not os.access(folder, os.W_OK | os.X_OK):
            raise PermissionError(f"{folder} exists but is not writable by this user")


def selected_containers(config: Config, names: list[str]) -> list[ContainerConfig]:
    """Return the containers named (all when none); raise KeyError for an unknown name."""
    if not names:
        return list(config.containers)
    known = {c.name for c in config.containers}
    for name in names:
        if name not in known:
            raise KeyError(
                f"no container {name!r} in the config (have: {', '.join(sorted(known))})"
            )
    return [c for c in config.containers if c.name in names]


def run_backfill(config: Config, names: list[str]) -> int:
    """`--backfill`: index the library (the named containers, else every container the
    config or the manifest knows) into each catalog sink, and queue it for each mirror
    sink; print the summary line; return the exit code (2 without a catalog or mirror sink
    or for an unknown container)."""
    from forge_syncd.events import backfill  # imported where used: `--once` starts faster

    backfill.prepare_manifest(config.state_dir)
    known = {c.name for c in config.containers} | backfill.manifest_containers(config.state_dir)
    unknown = [name for name in names if name not in known]
    if unknown:
        print(
            f"forge-syncd: no container {unknown[0]!r} in the config or the manifest",
            file=sys.stderr,
        )
        return EXIT_USAGE
    try:
        sinks = backfill.catalog_sinks(config) + backfill.mirror_sinks(config)
    except Exception as exc:
        print(f"forge-syncd: backfill: cannot open a catalog sink: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not sinks:
        print(
            "forge-syncd: no catalog: configure a catalog or postgres sink (or a mirror)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    files = backfill.library_files(config.state_dir, config.media_root, names or sorted(known))
    try:
        counts = backfill.backfill(sinks, files)
    except Exception as exc:
        print(f"forge-syncd: backfill failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        for _, sink in sinks:
            sink.close()
    print(counts.summary(), flush=True)
    return EXIT_OK


def with_discovered(config: Config, verbose: bool) -> Config:
    """Return `config` with the containers its `discover:` sources find now (for
    `--check-config` and `--once`); problems go to stderr, `verbose` also lists each
    source's finding."""
    if not config.discover:
        return config
    from forge_syncd.service.discover.sources import DiscoveryError, discover, merge

    found: list[list[ContainerConfig]] = []
    for source in config.discover:
        try:
            result = discover(source, config)
        except DiscoveryError as exc:
            print(f"discover: {source.label}: cannot read: {exc}", file=sys.stderr)
            continue
        if verbose:
            names = ", ".join(c.name for c in result.containers) or "none"
            print(f"discover: {source.label}: {len(result.containers)} found ({names})")
        for warning in result.warnings:
            print(f"discover: {source.label}: warning: {warning}", file=sys.stderr)
        for refused in result.clashes:
            print(f"discover: {source.label}: error: name {refused}", file=sys.stderr)
        for problem in result.problems:
            print(f"discover: {source.label}: skipped {problem}", file=sys.stderr)
        found.append(result.containers)
    merged, clashes = merge(config.containers, found)
    for clash in clashes:
        print(f"discover: skipped {clash}", file=sys.stderr)
    return dataclasses.replace(config, containers=tuple(merged))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = config_path(args.config)
    try:
        config = load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    if args.check_config:
        print(summarize_config(with_discovered(config, verbose=True)))
        return EXIT_OK
    mode = "backfill" if args.backfill else "drain" if args.drain else "once" if args.once else ""
    try:
        # Held until the process ends: one process per state, whatever its socket path.
        lock = StateLock.acquire(config.state_dir, mode or "daemon")
    except StateBusy as exc:
        drain = [*args.container[:1], *(f"--{o}" for o in ("purge", "json") if getattr(args, o))]
        print(refusal(exc, mode or "daemon", config.state_dir, " ".join(drain)), file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:
        print(f"forge-syncd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        return run_mode(args, path, config)
    finally:
        lock.release()


def run_mode(args: argparse.Namespace, path: Path, config: Config) -> int:
    """Run what the arguments ask for (all but --check-config), the state lock held."""
    if args.once:  # the daemon discovers on its own, again on every interval
        config = with_discovered(config, verbose=False)
    if args.backfill:
        memory.limit_arenas()
        logs.configure(config.log.level, config.log.file)
        return run_backfill(config, args.container)
    try:
        containers = selected_containers(config, args.container)
    except KeyError as exc:
        print(f"forge-syncd: {exc.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if args.once:
        for container in containers:  # its round trips overlap the imports below
            transports.warm(container)
    from forge_syncd.cli import once  # the runner's stack: imported while that connects

    memory.limit_arenas()
    if args.once:
        verbosity = once.QUIET if args.quiet else once.VERBOSE if args.verbose else once.NORMAL
        once.configure_output(config, verbosity)
    else:
        logs.configure(config.log.level, config.log.file)
    try:
        modes.configure(config.library)
        dedupe.configure(config.library.dedupe)
        prepare_directories(config)
    except (OSError, modes.LibraryError) as exc:
        print(f"forge-syncd: cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.once and args.drain:
        return once.run_drain(config, containers[0], args.purge, args.json)
    if args.once:
        return once.run_once(config, containers, verbosity)
    from forge_syncd.service.daemon import Daemon  # the daemon's own stack: `--once` needs none

    code = Daemon(path, config).run()
    # A job still stuck in network I/O after the stop deadline must not hold the exit.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
