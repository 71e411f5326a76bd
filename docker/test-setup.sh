#!/usr/bin/env bash
# Gets a Debian 12 machine (as root) ready to build and run the iotmock image, then builds it.
# tests/integration/test_zz_docker.py calls it; it also works by hand:
#
#   bash docker/test-setup.sh [TAG]        (TAG defaults to iotmock:test)
#
# 1. installs Debian's docker.io and debootstrap if they are missing;
# 2. starts dockerd in the background if no daemon answers (log in a temporary file);
# 3. makes the base image debian:bookworm-slim if it is absent: no registry is needed, the root
#    file system comes from debootstrap and this machine's own apt mirror;
# 4. builds docker/Dockerfile with the repository as context and tags it TAG.
#
# Progress goes to stderr. Stdout gets KEY=VALUE lines for the caller:
#   DOCKER=<client path>  DOCKERD_STARTED=<pid>  DOCKERD_LOG=<file>  IMAGE=<tag>
#   SECONDS_INSTALL, SECONDS_BASE, SECONDS_BUILD=<how long each step took, when it ran>
# Exit status 77 means Docker cannot run on this machine at all (not root, no apt-get, a daemon
# that does not start); the last stderr line says why. Any other failure (apt-get or the mirror
# failing, debootstrap, the build) exits non-zero otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=${1:-iotmock:test}
base=debian:bookworm-slim

say() { printf 'test-setup: %s\n' "$*" >&2; }
cannot() { say "cannot run Docker here: $*"; exit 77; }
t_start=$SECONDS

[ "$(id -u)" = 0 ] || cannot "not root"
# One set-up at a time on this machine (two test runs at once would both start a daemon).
exec 9>/tmp/iotmock-docker-setup.lock
flock -w 900 9 || { say "another set-up holds /tmp/iotmock-docker-setup.lock"; exit 1; }

# 1. Packages ---------------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null 2>&1 || [ -x /usr/sbin/dockerd ] || need+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || cannot "no apt-get to install ${need[*]}"
  say "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # The package lists are usually fresh (scripts/setup.sh has just used them): update only if
  # installing from them fails.
  if ! apt-get install -y -q --no-install-recommends "${need[@]}" >/tmp/iotmock-apt.log 2>&1; then
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2
  fi
  rm -f /tmp/iotmock-apt.log
  echo "SECONDS_INSTALL=$((SECONDS - t_start))"
fi
# Debian's client matches Debian's daemon (20.10); another docker earlier on PATH may not.
DOCKER=/usr/bin/docker
[ -x "$DOCKER" ] || DOCKER=$(command -v docker) || cannot "no docker client"
echo "DOCKER=$DOCKER"

# 2. The daemon --------------------------------------------------------------------------------
daemon_answers() { timeout 10 "$DOCKER" version --format '{{.Server.Version}}' >/dev/null 2>&1; }
if ! daemon_answers; then
  log=$(mktemp /tmp/iotmock-dockerd.XXXXXX.log)
  # A daemon stopped uncleanly may leave this mounted; dockerd then fails to set up networking.
  if mountpoint -q /run/docker/netns/default 2>/dev/null; then umount /run/docker/netns/default || true; fi
  say "starting dockerd (log: $log)"
  setsid dockerd >"$log" 2>&1 </dev/null 9>&- &  # 9>&-: the daemon must not keep the lock
  pid=$!
  echo "DOCKERD_STARTED=$pid"
  echo "DOCKERD_LOG=$log"
  for _ in $(seq 300); do
    daemon_answers && break
    kill -0 "$pid" 2>/dev/null || { tail -n 20 "$log" >&2; cannot "dockerd exited at start (see $log)"; }
    sleep 0.1
  done
  daemon_answers || { tail -n 20 "$log" >&2; cannot "dockerd did not answer within 30 s (see $log)"; }
  say "dockerd ready after $((SECONDS - t_start)) s"
fi
t_base=$SECONDS

# 3. The base image ----------------------------------------------------------------------------
# Prints "URI SUITE" for every enabled deb entry in this machine's apt sources (one-line
# sources.list format and deb822 .sources format).
apt_entries() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" { i = 2
           if ($i ~ /^\[/) { while (i < NF && $i !~ /\]$/) i++; i++ }
           print $i, $(i + 1) }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    awk 'function flush(  n, m, a, b, u, s) {
           if (types ~ /(^|[ \t])deb([ \t]|$)/ && tolower(enabled) != "no") {
             n = split(uris, u, /[ \t]+/); m = split(suites, s, /[ \t]+/)
             for (a = 1; a <= n; a++) for (b = 1; b <= m; b++) if (u[a] != "" && s[b] != "") print u[a], s[b]
           }
           types = uris = suites = enabled = ""
         }
         /^[ \t]*#/ { next }
         /^[ \t]*$/ { flush(); next }
         { key = tolower($1); val = $0; sub(/^[^:]*:[ \t]*/, "", val) }
         key == "types:" { types = val } key == "uris:" { uris = val }
         key == "suites:" { suites = val } key == "enabled:" { enabled = val }
         END { flush() }' "$f"
  done
}
mirror_for() { apt_entries | awk -v s="$1" '$2 == s && $1 ~ /^https?:\/\// { print $1; exit }'; }

make_base() {
  local mirror security
  mirror=$(mirror_for bookworm)
  [ -n "$mirror" ] || cannot "no bookworm entry in /etc/apt/sources.list*"
  security=$(mirror_for bookworm-security)
  root=$(mktemp -d /tmp/iotmock-rootfs.XXXXXX)
  trap 'rm -rf "$root" "$root.log"' EXIT
  say "making $base with debootstrap from $mirror"
  # Like Debian's official slim images: no documentation, manual pages or translations.
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-include /usr/share/doc/*/copyright' \
    'path-exclude /usr/share/man/*' 'path-exclude /usr/share/info/*' \
    'path-exclude /usr/share/groff/*' 'path-exclude /usr/share/lintian/*' \
    'path-exclude /usr/share/linda/*' 'path-exclude /usr/share/locale/*' \
    >"$root/etc/dpkg/dpkg.cfg.d/slim"
  # No fsync after each unpacked file, as in the official images: a build's layers are written
  # once, and apt-get install in a build step is much faster without it.
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/unsafe-io"
  local include=()
  case "$mirror$security" in *https:*) include=(--include=ca-certificates) ;; esac
  debootstrap --variant=minbase "${include[@]}" bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 30 "$root.log" >&2; say "debootstrap failed"; exit 1; }
  {
    echo "deb $mirror bookworm main"
    echo "deb $mirror bookworm-updates main"
    if [ -n "$security" ]; then echo "deb $security bookworm-security main"; fi
  } >"$root/etc/apt/sources.list"
  # Packages' own files, as dpkg would have left them out: debootstrap's first stage unpacks
  # without the exclusions above.
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/{man,info,groff,lintian,linda,locale}/* 2>/dev/null || true
  # apt in a container: no cached .debs or package caches, no translations.
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };' \
    'Binary::apt::APT::Keep-Downloaded-Packages "false";' 'Acquire::Languages "none";' \
    'Dir::Cache::pkgcache "";' 'Dir::Cache::srcpkgcache "";' \
    >"$root/etc/apt/apt.conf.d/docker-clean"
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/var/log/*.log "$root"/var/log/apt/* "$root"/tmp/* "$root"/var/tmp/*
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  tar --numeric-owner -C "$root" -c . |
    "$DOCKER" import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase bookworm" - "$base" >&2
  rm -rf "$root" "$root.log"
  trap - EXIT
  say "$base made in $((SECONDS - t_base)) s"
  echo "SECONDS_BASE=$((SECONDS - t_base))"
}
if ! "$DOCKER" image inspect "$base" >/dev/null 2>&1; then make_base; fi

# 4. The image -----------------------------------------------------------------------------
t_build=$SECONDS
say "building $tag"
DOCKER_BUILDKIT=1 "$DOCKER" build --progress=plain -f docker/Dockerfile -t "$tag" . >&2
# Earlier builds of the tag are left unnamed: drop those (a test run tags the image it uses).
"$DOCKER" image prune -f --filter "label=org.opencontainers.image.title=iotmock" >/dev/null || true
echo "SECONDS_BUILD=$((SECONDS - t_build))"
echo "IMAGE=$tag"
say "ready after $((SECONDS - t_start)) s"
