# Sourced by scripts/check and scripts/demo: install what forge-syncd and its tests need.
# Debian/Ubuntu as root: apt packages when a tool is missing, then a venv in .venv.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

need_apt=()
[ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v ssh >/dev/null || need_apt+=(openssh-client)
command -v ssh-keygen >/dev/null || need_apt+=(openssh-client)
command -v rsync >/dev/null || need_apt+=(rsync)
command -v inotifywait >/dev/null || need_apt+=(inotify-tools)  # live mode: the inotifywait watcher
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
python3 -c 'import venv, ensurepip' 2>/dev/null || need_apt+=(python3-venv)
# the systemd tests boot a debootstrapped Debian with systemd-nspawn (scripts/systemd-nspawn-test);
# scripts/build-deb builds the Debian package that one of them installs
command -v debootstrap >/dev/null || need_apt+=(debootstrap)
command -v systemd-nspawn >/dev/null || need_apt+=(systemd-container)
command -v bc >/dev/null || need_apt+=(bc)
command -v dh >/dev/null || need_apt+=(debhelper)
command -v help2man >/dev/null || need_apt+=(help2man)
# the postgres sink's tests start a PostgreSQL server; Debian keeps initdb and pg_ctl in
# /usr/lib/postgresql/<version>/bin, off PATH (tests/support/postgres.py looks there)
command -v initdb >/dev/null || compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null \
  || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${need_apt[@]}" >/dev/null
fi

# The test tiers that need a Docker engine, a reflink filesystem, rclone, a browser or ffmpeg
# (tests/support/docker.py, reflink.py, rclone.py, browser.py; tests/gallery/test_posters.py). Each tier skips itself, saying
# why, where its tools are missing, so a failed install here is said and not fatal.
need_tiers=()
[ -x /usr/sbin/dockerd ] || need_tiers+=(docker.io)
command -v busybox >/dev/null || need_tiers+=(busybox-static)
command -v mkfs.xfs >/dev/null || need_tiers+=(xfsprogs)
command -v filefrag >/dev/null || need_tiers+=(e2fsprogs)
command -v rclone >/dev/null || need_tiers+=(rclone)
[ -x /usr/bin/chromium ] || need_tiers+=(chromium)
[ -x /usr/bin/chromedriver ] || need_tiers+=(chromium-driver)
command -v tmux >/dev/null || need_tiers+=(tmux)
command -v ffmpeg >/dev/null || need_tiers+=(ffmpeg)  # the gallery's video poster frames
if [ ${#need_tiers[@]} -gt 0 ]; then
  echo "bootstrap: apt-get install ${need_tiers[*]} (test tiers)" >&2
  { DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
      "${need_tiers[@]}" >/dev/null; } ||
    echo "bootstrap: could not install ${need_tiers[*]}: those test tiers will be skipped" >&2
fi

if [ ! -x "$repo/.venv/bin/python" ]; then
  python3 -m venv "$repo/.venv"
fi
stamp="$repo/.venv/.installed-$(sha256sum "$repo/pyproject.toml" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  "$repo/.venv/bin/pip" install -q --upgrade pip >/dev/null
  "$repo/.venv/bin/pip" install -q -e "$repo[test]"
  touch "$stamp"
fi
export PATH="$repo/.venv/bin:$PATH"
