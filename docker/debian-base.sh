#!/bin/bash
# A Debian bookworm base image made on this machine, for hosts that reach the
# Debian mirror but no image registry (the project's development machines).
#
#   docker/debian-base.sh [NAME]     default NAME: hfs-debian:bookworm
#
# debootstrap --variant=minbase (Debian package `debootstrap`, root), then
# `docker import`. Skips the work when the image exists already. ~30-60 s.
# With an image registry at hand you do not need this: the Dockerfile's
# default base is the public python:3.11-slim.
set -euo pipefail
NAME=${1:-hfs-debian:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
if docker image inspect "$NAME" >/dev/null 2>&1; then
  echo "debian-base: $NAME exists"; exit 0
fi
command -v debootstrap >/dev/null || { echo "debian-base: needs debootstrap (apt-get install debootstrap), as root" >&2; exit 1; }
DIR=$(mktemp -d /var/tmp/hfs-debootstrap.XXXXXX)
trap 'rm -rf "$DIR"' EXIT
debootstrap --variant=minbase bookworm "$DIR" "$MIRROR" >"$DIR.log" 2>&1 \
  || { tail -20 "$DIR.log" >&2; rm -f "$DIR.log"; exit 1; }
rm -f "$DIR.log"
# the same apt sources the official debian image has, and no apt caches
printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
  "$MIRROR" "$MIRROR" >"$DIR/etc/apt/sources.list"
rm -rf "$DIR"/var/cache/apt/archives/*.deb "$DIR"/var/lib/apt/lists/*
tar -C "$DIR" -c . | docker import -c 'CMD ["/bin/bash"]' - "$NAME" >/dev/null
echo "debian-base: imported $NAME"
