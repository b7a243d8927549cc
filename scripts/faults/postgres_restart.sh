#!/usr/bin/env bash
# PostgreSQL restarted under load (issue 15): `leadscore serve` on a fresh schema of the
# PostgreSQL at $LEADSCORE_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/test)
# takes sustained ingest (scripts/faults/ingest_client.py) while the cluster is restarted
# $RESTARTS times (default 2, a few seconds apart). What must hold: every acknowledged
# event stored exactly once, ingest answering 503 with Retry-After while the database is
# gone (no 500, no hang), and ingest recovering by itself. Needs pg_ctlcluster and root (or
# the postgres user); not part of `cargo test`, because it restarts the PostgreSQL the
# other tests share. Usage: scripts/faults/postgres_restart.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../.."

seconds="${1:-30}"
restarts="${RESTARTS:-2}"
url="${LEADSCORE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
target="${CARGO_TARGET_DIR:-target}"
bin="${LEADSCORE_BIN:-$target/release/leadscore}"
if [ ! -x "$bin" ]; then
    cargo build --release --locked -p leadscore
fi
cluster="$(ls /etc/postgresql | head -n 1)"
schema="fault_pg_$$"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
key="lsk_fault_$$_$RANDOM"
separator='?'
case "$url" in *\?*) separator='&' ;; esac

log="$(mktemp)"
LEADSCORE_ADMIN_KEY="$key" LEADSCORE_LOG=warn "$bin" serve --addr "127.0.0.1:$port" \
    --database-url "$url${separator}options=-csearch_path%3D$schema" >/dev/null 2>"$log" &
server=$!
cleanup() {
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
    pg_isready -h 127.0.0.1 -q || pg_ctlcluster --skip-systemctl-redirect "$cluster" main start || true
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -q && break; sleep 1; done
    psql "$url" -q -c "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    rm -f "$log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
curl -fs -X PUT "http://127.0.0.1:$port/api/v1/models/web" -H "Authorization: Bearer $key" \
    -H 'content-type: application/toml' \
    --data-binary $'name = "web"\n[[activity]]\nname = "Views"\nevent = "Viewed"\npoints = 1\n' >/dev/null

python3 scripts/faults/ingest_client.py --base "http://127.0.0.1:$port" --key "$key" --seconds "$seconds" --tag pg &
client=$!
sleep 4
for n in $(seq 1 "$restarts"); do
    started=$(date +%s.%N)
    pg_ctlcluster --skip-systemctl-redirect "$cluster" main restart
    echo "restart $n of PostgreSQL $cluster took $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }") s"
    sleep 6
done
status=0
wait "$client" || status=$?
echo "server log (warnings and errors): $(grep -c . "$log") lines; panics: $(grep -c panicked "$log" || true)"
grep -v "the database is unavailable" "$log" | tail -n 5 || true
if ! kill -0 "$server" 2>/dev/null; then
    echo "the server died" >&2
    status=1
fi
exit "$status"
