#!/usr/bin/env bash
# The disk really full (ENOSPC), under load (issue 15): `leadscore serve` with its data on
# a tmpfs (512 MiB) takes sustained ingest (scripts/faults/ingest_client.py) while a file fills
# every byte left for a while, then goes. What must hold: every acknowledged event stored
# exactly once, ingest answering 503 with Retry-After while the disk is full (no 500, the
# process alive), and recovering by itself once space is back. Needs root (mount); the
# unprivileged version, which CI runs, is faults.rs's disk_full test (RLIMIT_FSIZE).
# Usage: scripts/faults/disk_full.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${1:-25}"
target="${CARGO_TARGET_DIR:-target}"
bin="${LEADSCORE_BIN:-$target/release/leadscore}"
if [ ! -x "$bin" ]; then
    cargo build --release --locked -p leadscore
fi
mnt="$(mktemp -d)"
mount -t tmpfs -o size=512m tmpfs "$mnt"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="lsk_fault_$$_$RANDOM"
log="$(mktemp)"
LEADSCORE_ADMIN_KEY="$key" LEADSCORE_LOG=warn "$bin" serve --addr "127.0.0.1:$port" --data "$mnt/data" >/dev/null 2>"$log" &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    umount "$mnt" || true
    rmdir "$mnt" || true
    rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -fs -X PUT "http://127.0.0.1:$port/api/v1/models/web" -H "Authorization: Bearer $key" \
    -H 'content-type: application/toml' \
    --data-binary $'name = "web"\n[[activity]]\nname = "Views"\nevent = "Viewed"\npoints = 1\n' >/dev/null

python3 scripts/faults/ingest_client.py --base "http://127.0.0.1:$port" --key "$key" --seconds "$seconds" --tag disk &
client=$!
sleep 3
# Every byte left, then a little more as the database grows into what the filler left.
dd if=/dev/zero of="$mnt/filler" bs=1M status=none 2>/dev/null || true
echo "disk full: $(df -h "$mnt" | tail -n 1)"
sleep 8
rm -f "$mnt/filler"
echo "space back: $(df -h "$mnt" | tail -n 1)"
status=0
wait "$client" || status=$?
echo "server log (warnings and errors): $(grep -c . "$log") lines; panics: $(grep -c panicked "$log" || true)"
grep -v "the database is unavailable" "$log" | tail -n 5 || true
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died" >&2
    status=1
fi
exit "$status"
