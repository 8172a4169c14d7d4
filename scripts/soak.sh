#!/bin/bash
# Endurance soak: calls with RTP both ways through swbd and two swrtp nodes
# for MINUTES minutes, on loopback, sampling every 30 s:
#   swbd and swrtp RSS and open descriptors, calls up, media sessions per
#   node, RTP sockets held per node.
# It fails (exit 1) on any failed call, on any session or RTP port still held
# 15 s after the last call ended, or on swbd RSS growing past warm-up
# (the maximum after the first quarter of the run may exceed the value at
# the end of the first quarter by at most 20% + 16 MiB).
#
#   MINUTES=10 RATE=20 HOLD=20 scripts/soak.sh
#   BIN=target/release (default: builds release binaries)
# Results: target/soak/samples.tsv, target/soak/bench.json, target/soak/summary.txt
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
MINUTES=${MINUTES:-10}
RATE=${RATE:-20}
HOLD=${HOLD:-20}
OUT=${OUT:-$ROOT/target/soak}
RUN=$(mktemp -d /tmp/swsoak.XXXXXX)
chmod 700 "$RUN"
mkdir -p "$OUT"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swctl, swbench"
    (cd "$ROOT" && cargo build --release -q -p swbd -p swrtp -p swctl -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

pids=()
cleanup() {
    trap - EXIT INT TERM
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

python3 -c '
print("users:")
for u in range(1000, 3000):
    print(f"  - {{ username: \"{u}\", password: \"pw{u}\" }}")' >"$RUN/users.yaml"
TOKEN=$RUN/media.token
echo "rtp_timeout_secs: 30" >"$RUN/swrtp.yaml"
start_node() { # NAME PORT RTP_RANGE (not in a subshell: `pids` must see it)
    RUST_LOG=warn "$BIN/swrtp" --config "$RUN/swrtp.yaml" --node-id "$1" \
        --listen "tcp://127.0.0.1:$2" --admin "unix://$RUN/$1.sock" \
        --media-token-file "$TOKEN" --rtp-ports "$3" \
        --audio-dir "$ROOT/testdata/audio" >"$OUT/$1.log" 2>&1 &
    pids+=($!)
    STARTED=$!
}
start_node rtp-a 19090 40000-43999
PID_A=$STARTED
start_node rtp-b 19091 44000-47999
PID_B=$STARTED
sleep 0.5
for p in "$PID_A" "$PID_B"; do
    kill -0 "$p" 2>/dev/null || { log "a media node did not start (see $OUT/rtp-*.log)"; exit 1; }
done
cat >"$RUN/swbd.yaml" <<EOF
auth: { enabled: false }
sip:
  listen: ["udp:127.0.0.1:5090"]
  domains: ["127.0.0.1"]
admin: { socket: "$RUN/swbd.sock" }
media:
  token_file: "$TOKEN"
  health_interval_ms: 1000
  nodes:
    - { name: rtp-a, address: "tcp://127.0.0.1:19090" }
    - { name: rtp-b, address: "tcp://127.0.0.1:19091" }
EOF
sleep 0.5
RUST_LOG=warn "$BIN/swbd" --config "$RUN/swbd.yaml" >"$OUT/swbd.log" 2>&1 &
pids+=($!)
PID_SWBD=$!
sleep 3
kill -0 "$PID_SWBD" 2>/dev/null || { log "swbd did not start (see $OUT/swbd.log)"; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
fds() { ls "/proc/$1/fd" 2>/dev/null | wc -l; }
udp_socks() { ss -Huanp 2>/dev/null | grep -c "pid=$1," || true; }
active() { # SOCKET
    "$BIN/swctl" --host "unix://$1" status -o json 2>/dev/null \
        | python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d.get("active",0))' 2>/dev/null || echo "?"
}
sample() {
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date +%s)" \
        "$(rss_kib "$PID_SWBD")" "$(fds "$PID_SWBD")" "$(active "$RUN/swbd.sock")" \
        "$(rss_kib "$PID_A")" "$(fds "$PID_A")" "$(active "$RUN/rtp-a.sock")" "$(udp_socks "$PID_A")" \
        "$(rss_kib "$PID_B")" "$(fds "$PID_B")" "$(active "$RUN/rtp-b.sock")" "$(udp_socks "$PID_B")"
}
printf 'time\tswbd_rss_kib\tswbd_fds\tcalls\trtp_a_rss_kib\trtp_a_fds\trtp_a_sessions\trtp_a_udp\trtp_b_rss_kib\trtp_b_fds\trtp_b_sessions\trtp_b_udp\n' >"$OUT/samples.tsv"
sample >>"$OUT/samples.tsv"

SECS=$((MINUTES * 60))
log "soak: $MINUTES min, $RATE calls/s, hold $HOLD s, RTP both ways, 2 nodes"
"$BIN/swbench" calls --server 127.0.0.1:5090 --callees 1000-1999 --callers 2000-2999 --rtp \
    --rate "$RATE" --duration "$SECS" --hold "$HOLD" --max-concurrent 5000 \
    --max-seconds $((SECS + HOLD + 120)) --json \
    --watch "swbd=$PID_SWBD" --watch "rtp-a=$PID_A" --watch "rtp-b=$PID_B" >"$OUT/bench.json" &
GEN=$!
while kill -0 "$GEN" 2>/dev/null; do
    sleep 30
    sample >>"$OUT/samples.tsv"
    tail -n 1 "$OUT/samples.tsv" >&2
done
wait "$GEN" || true
sleep 15
sample >>"$OUT/samples.tsv"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.txt"
import json, sys
out = sys.argv[1]
rows = [l.rstrip("\n").split("\t") for l in open(f"{out}/samples.tsv")]
head, data = rows[0], rows[1:]
col = {n: i for i, n in enumerate(head)}
def series(name):
    v = []
    for r in data:
        try:
            v.append(int(r[col[name]]))
        except ValueError:
            v.append(None)
    return v
b = json.load(open(f"{out}/bench.json"))
phases = b.get("phases", [])
started = sum(p["started"] for p in phases)
ok = sum(p["succeeded"] for p in phases)
failed = sum(p["failed"] for p in phases)
unfinished = sum(p["unfinished"] for p in phases)
problems = []
if failed or unfinished:
    problems.append(f"{failed} failed and {unfinished} unfinished calls: "
                    + json.dumps([p["failures"] for p in phases]))
if not ok:
    problems.append("no call succeeded")
last = data[-1]
for n in ("calls", "rtp_a_sessions", "rtp_b_sessions"):
    if last[col[n]] not in ("0",):
        problems.append(f"{n} = {last[col[n]]} after the run")
for n in ("rtp_a_udp", "rtp_b_udp"):
    if last[col[n]] not in ("0",):
        problems.append(f"{n} = {last[col[n]]} RTP sockets still held after the run")
rss = [x for x in series("swbd_rss_kib") if x]
if len(rss) >= 8:
    warm = rss[len(rss) // 4]
    peak = max(rss[len(rss) // 4:])
    if peak > warm * 1.2 + 16 * 1024:
        problems.append(f"swbd RSS grew after warm-up: {warm} -> {peak} KiB")
print(f"calls started {started}, succeeded {ok}, failed {failed}")
print(f"swbd RSS KiB first/warm/peak/last: {rss[0] if rss else '?'} / "
      f"{rss[len(rss)//4] if rss else '?'} / {max(rss) if rss else '?'} / {rss[-1] if rss else '?'}")
print(f"swbd fds first/max/last: {series('swbd_fds')[0]} / {max(x for x in series('swbd_fds') if x)} / {series('swbd_fds')[-1]}")
print("result: " + ("FAIL: " + "; ".join(problems) if problems else "PASS"))
sys.exit(1 if problems else 0)
PY
