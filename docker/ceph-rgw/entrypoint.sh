#!/bin/bash
# Start mon, osd and mgr through ceph-rgw.sh (its gateway on loopback), add
# the S3 user of the stack (S3_ACCESS_KEY / S3_SECRET_KEY), then run the
# gateway in the foreground on 0.0.0.0:$S3_PORT as the container's main process.
set -euo pipefail
D=/var/lib/hfs-ceph
PORT=${S3_PORT:-9000}
: "${S3_ACCESS_KEY:?set S3_ACCESS_KEY}" "${S3_SECRET_KEY:?set S3_SECRET_KEY}"
rm -rf "$D"
# loopback gateway on 7480: the monitor then listens on 3300 and 6789, Ceph's defaults
ceph-rgw.sh start "$D" 7480
radosgw-admin -c "$D/ceph.conf" user create --uid=hfs --display-name="harmonic-feature-store" \
  --access-key="$S3_ACCESS_KEY" --secret-key="$S3_SECRET_KEY" >/dev/null
# (as PID 1 this shell inherits the daemons: a stopped one may linger as a zombie)
rgw=$(cat "$D/pid.rgw"); kill "$rgw"
while [ -e "/proc/$rgw" ] && ! grep -q "^State:.*Z" "/proc/$rgw/status" 2>/dev/null; do sleep 0.2; done
sed -i "s/^rgw frontends = .*/rgw frontends = beast endpoint=0.0.0.0:$PORT/" "$D/ceph.conf"
echo "ceph-rgw: S3 on 0.0.0.0:$PORT"
exec radosgw -c "$D/ceph.conf" -f -n client.rgw.a
