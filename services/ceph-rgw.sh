#!/bin/bash
# A single-node Ceph cluster with its RADOS Gateway: a real S3-compatible
# object store on 127.0.0.1, for the tests of s3:// feature stores
# (tests/s3_fixtures.py starts and stops it; .ci/run installs it).
#
#   ceph-rgw.sh install            apt packages (idempotent; needs root; ~20-60 s)
#   ceph-rgw.sh installed          exit 0 when the daemons are installed
#   ceph-rgw.sh start DIR [PORT]   all state under DIR; S3 on 127.0.0.1:PORT (7480)
#   ceph-rgw.sh stop DIR           stops the daemons by the PIDs recorded in DIR
#
# After start: endpoint http://127.0.0.1:PORT, access key TESTACCESSKEY,
# secret key TESTSECRETKEY123 (test-only credentials of a loopback server).
# With s3fs pass client_kwargs={"endpoint_url": ..., "region_name": "default"}
# (s3fs sends region_name as the bucket LocationConstraint; this gateway's
# zonegroup is "default"), or set AWS_ENDPOINT_URL / AWS_DEFAULT_REGION.
# Bucket names follow S3 rules (3-63 characters).
# The monitor listens on PORT-4180 and PORT-691, so pick PORT so that those
# are free too. Ready in about 20 s; about 600 MB of memory; the OSD's block
# file is sparse (10 GiB apparent, only written data uses disk).
#
# Adapted from ../shared/services/ceph-rgw.sh: idempotent install, a readiness
# check that fails loudly instead of falling through, and `installed`.
set -euo pipefail
cmd=${1:-}
BINARIES="ceph-mon ceph-osd ceph-mgr radosgw radosgw-admin ceph-authtool monmaptool uuidgen curl"

installed() {
  for b in $BINARIES; do command -v "$b" >/dev/null 2>&1 || return 1; done
}

case "$cmd" in
install)
  if installed; then echo "ceph-rgw: already installed"; exit 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "ceph-rgw: installing needs root (apt-get); run: sudo $0 install" >&2; exit 1
  fi
  # apt can be briefly locked by another installer; retry a few times
  for attempt in 1 2 3; do
    if apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends ceph-mon ceph-osd ceph-mgr radosgw uuid-runtime curl >/dev/null; then
      break
    fi
    echo "ceph-rgw: apt attempt $attempt failed; retrying in 10 s" >&2; sleep 10
  done
  installed || { echo "ceph-rgw: install failed (binaries missing: $BINARIES)" >&2; exit 1; }
  echo "ceph-rgw: installed"
  ;;
installed)
  installed
  ;;
start)
  installed || { echo "ceph-rgw: not installed; run: $0 install" >&2; exit 1; }
  D=$(realpath -m "${2:?state dir}"); PORT=${3:-7480}
  mkdir -p "$D"/run "$D"/log "$D"/mon.a "$D"/osd.0 "$D"/mgr.x "$D"/rgw.a
  FSID=$(uuidgen)
  # mon ports are offset from the S3 port so two clusters can coexist
  MON2=$((PORT - 4180)); MON1=$((PORT - 691))
  cat > "$D/ceph.conf" <<CONF
[global]
fsid = $FSID
mon host = [v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]
public addr = 127.0.0.1
cluster addr = 127.0.0.1
ms bind ipv6 = false
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon allow pool size one = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
osd crush chooseleaf type = 0
run dir = $D/run
admin socket = $D/run/\$cluster-\$name.asok
log file = $D/log/\$cluster-\$name.log
pid file = $D/run/\$name.pid
keyring = $D/keyring
mon data = $D/mon.\$id
osd data = $D/osd.\$id
mgr data = $D/mgr.\$id
[osd]
osd objectstore = bluestore
bluestore block path = $D/osd-\$id-block.img
bluestore block create = true
bluestore block size = 10737418240
bluestore fsck on mount = false
osd memory target = 1073741824
osd max object name len = 460
osd max object namespace len = 64
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
# without this the gateway insists on secure mode and loops on auth error -13
ms mon client mode = crc
rgw data = $D/rgw.a
log file = $D/log/rgw.a.log
CONF
  C="-c $D/ceph.conf"
  ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' \
    --cap mgr 'allow *' --cap mds 'allow *' >/dev/null
  monmaptool --create --fsid "$FSID" --addv a "[v2:127.0.0.1:$MON2,v1:127.0.0.1:$MON1]" "$D/monmap" >/dev/null
  ceph-mon $C --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring"
  setsid nohup ceph-mon $C -f -i a >"$D/log/mon.stdout" 2>&1 & echo $! >"$D/pid.mon"
  for i in $(seq 1 30); do timeout 5 ceph $C -s >/dev/null 2>&1 && break; sleep 1; done
  OSD_UUID=$(uuidgen)
  OSD_ID=$(timeout 30 ceph $C osd new "$OSD_UUID")
  ceph-osd $C -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >/dev/null 2>&1
  setsid nohup ceph-osd $C -f -i "$OSD_ID" >"$D/log/osd.stdout" 2>&1 & echo $! >"$D/pid.osd"
  setsid nohup ceph-mgr $C -f -i x >"$D/log/mgr.stdout" 2>&1 & echo $! >"$D/pid.mgr"
  for i in $(seq 1 60); do timeout 10 ceph $C osd stat 2>/dev/null | grep -q "1 up" && break; sleep 1; done
  setsid nohup radosgw $C -f -n client.rgw.a >"$D/log/rgw.stdout" 2>&1 & echo $! >"$D/pid.rgw"
  up=0
  for i in $(seq 1 90); do curl -s -o /dev/null "http://127.0.0.1:$PORT/" && { up=1; break; }; sleep 1; done
  if [ "$up" != 1 ]; then
    echo "ceph-rgw: the gateway did not answer on 127.0.0.1:$PORT within 90 s; logs in $D/log" >&2
    exit 1
  fi
  radosgw-admin $C user create --uid=tester --display-name=Tester \
    --access-key=TESTACCESSKEY --secret-key=TESTSECRETKEY123 >/dev/null
  echo "S3 endpoint http://127.0.0.1:$PORT (key TESTACCESSKEY / TESTSECRETKEY123)"
  ;;
stop)
  D=$(realpath -m "${2:?state dir}")
  for s in rgw mgr osd mon; do
    f="$D/pid.$s"; [ -f "$f" ] || continue; p=$(cat "$f")
    if kill -0 "$p" 2>/dev/null; then
      kill "$p"; for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 1; done
      kill -0 "$p" 2>/dev/null && kill -9 "$p"
    fi
    rm -f "$f"
  done
  ;;
*) sed -n '2,19p' "$0"; exit 2 ;;
esac
