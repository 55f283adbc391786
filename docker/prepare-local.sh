#!/bin/bash
# Fill docker/local/ (git-ignored) from this machine's own pip setup, so that
# image builds install what the host's pip installs:
#
#   docker/local/ca.crt           the CA bundle the host's pip trusts (PIP_CERT / pip config
#                                 global.cert): containers reach PyPI through the same proxy
#   docker/local/wheels/          the torch wheel the host's pip takes from local disk
#                                 (PIP_FIND_LINKS / global.find-links), hard-linked
#   docker/local/constraints.txt  the versions of the project's venv (.venv), so the images
#                                 run what the host's tests ran
#   docker/local/pip.conf         pip settings pointing at the three
#   docker/ceph-rgw/ceph-rgw.sh   services/ceph-rgw.sh, for the Ceph RGW image
#
#   docker/prepare-local.sh [VENV]     default VENV: .venv
#
# Then build with docker/compose.local.yml (it passes the TORCH_* build args
# that make pip use the local wheel). Nothing here is needed where the image
# build reaches PyPI and download.pytorch.org directly.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY="$VENV/bin/python"
L=docker/local
NEW=$(mktemp -d)
trap 'rm -rf "$NEW"' EXIT
mkdir -p "$NEW/wheels"

pipconf() { "$PY" -m pip config get "$1" 2>/dev/null || true; }
cert=${PIP_CERT:-$(pipconf global.cert)}
[ -n "$cert" ] || cert=/etc/ssl/certs/ca-certificates.crt
cp "$cert" "$NEW/ca.crt"

torch_version=$("$PY" -c 'import torch; print(torch.__version__)')
links="${PIP_FIND_LINKS:-} $(pipconf global.find-links)"
wheel=
for dir in $links; do
  dir=${dir#file://}
  for w in "$dir"/torch-"$torch_version"-cp311-*.whl; do [ -f "$w" ] && { wheel=$w; break 2; }; done
done
if [ -n "$wheel" ]; then
  ln "$wheel" "$NEW/wheels/" 2>/dev/null || cp -p "$wheel" "$NEW/wheels/"
  echo "prepare-local: torch wheel $(basename "$wheel")"
else
  echo "prepare-local: no local wheel of torch $torch_version in pip's find-links ($links); pip will look it up on the index" >&2
fi

# name==version lines only (no editable or direct-URL installs, not the project itself)
"$PY" -m pip freeze --exclude-editable 2>/dev/null \
  | grep -E '^[A-Za-z0-9_.-]+==[^ ]+$' | grep -v -i '^harmonic-feature-store==' >"$NEW/constraints.txt"

cat >"$NEW/pip.conf" <<CONF
[global]
cert = /tmp/local/ca.crt
find-links = /tmp/local/wheels
constraint = /tmp/local/constraints.txt
CONF
cp services/ceph-rgw.sh "$NEW/ceph-rgw.sh"

# Replace only what changed: the image build's cache keys on these files, so an
# unchanged setup rebuilds nothing.
same() { [ -f "$2" ] && cmp -s "$1" "$2"; }
for f in ca.crt constraints.txt pip.conf; do same "$NEW/$f" "$L/$f" || mv "$NEW/$f" "$L/$f"; done
same "$NEW/ceph-rgw.sh" docker/ceph-rgw/ceph-rgw.sh || mv "$NEW/ceph-rgw.sh" docker/ceph-rgw/ceph-rgw.sh
mkdir -p "$L/wheels"
for w in "$L"/wheels/*.whl; do [ -e "$w" ] && { [ -e "$NEW/wheels/$(basename "$w")" ] || rm -f "$w"; }; done
for w in "$NEW"/wheels/*.whl; do [ -e "$w" ] && { same "$w" "$L/wheels/$(basename "$w")" || mv "$w" "$L/wheels/"; }; done
echo "prepare-local: docker/local/ ready ($(wc -l <"$L/constraints.txt") pinned versions)"
