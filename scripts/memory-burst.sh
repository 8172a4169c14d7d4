#!/bin/bash
# Does swbd give memory back after a burst? (issue #14, docs/BENCHMARKS.md
# "Memory after a burst"). Starts swrtp + swbd (release), measures swbd's
# RSS idle (baseline), during a burst of RATE calls/s for SECS seconds
# (swbench, hold HOLD s, caller hangs up so swbd sends the BYE to the
# callee), and AFTER seconds after the burst ended (past the 32 s RFC 3261
# windows), then checks
#
#   RSS after <= 2 x (baseline + live calls x PER_CALL_KIB)
#
# (live calls after the burst: the calls swbench left unfinished, normally
# 0) and prints PASS or FAIL (exit 0 / 1).
#
#   scripts/memory-burst.sh                   1000 calls/s for 20 s, then 40 s
#   RATE=500 SECS=10 scripts/memory-burst.sh
#   BIN=dir                                   swrtp and swbench from dir, no build
#   SWBD=path                                 the swbd binary (an allocator variant)
#   SWBD_ENV="MALLOC_ARENA_MAX=2"             environment for swbd only
#   TRIM=1                                    also call glibc malloc_trim(0) in swbd
#                                             (gdb) at the end and measure again
#   OUT=dir                                   results (default target/memory-burst)
#
# Bounded: RATE <= 3000, SECS <= 60, AFTER <= 120, swbench --max-seconds.
# Loopback only. Daemons started here are stopped at exit by their PIDs.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RATE=${RATE:-1000}
SECS=${SECS:-20}
HOLD=${HOLD:-1}
AFTER=${AFTER:-40}
# RSS of one live call in swbd (docs/BENCHMARKS.md: 26.9 KiB at 1,000 calls).
PER_CALL_KIB=${PER_CALL_KIB:-27}
TRIM=${TRIM:-0}
OUT=${OUT:-$ROOT/target/memory-burst}
RUN=$(mktemp -d /tmp/memory-burst.XXXXXX)
SIP_PORT=${SIP_PORT:-5090}
CTL_PORT=${CTL_PORT:-9095}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 2; }
[ "$RATE" -ge 1 ] && [ "$RATE" -le 3000 ] || die "RATE must be 1..3000"
[ "$SECS" -ge 1 ] && [ "$SECS" -le 60 ] || die "SECS must be 1..60"
[ "$AFTER" -ge 0 ] && [ "$AFTER" -le 120 ] || die "AFTER must be 0..120"
mkdir -p "$OUT"

if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swbench"
    (cd "$ROOT" && cargo build --release -p swbd -p swrtp -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
SWBD=${SWBD:-$BIN/swbd}
for b in "$SWBD" "$BIN/swrtp" "$BIN/swbench"; do [ -x "$b" ] || die "missing $b"; done

PIDS=()
cleanup() {
    local p i
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 1 30); do
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    cp "$RUN"/*.log "$OUT/" 2>/dev/null || true
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
wait_udp() {
    local i
    for i in $(seq 1 100); do ss -Hlnu "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    die "nothing listens on udp $1"
}

echo "rtp_timeout_secs: 0" >"$RUN/swrtp.yaml"
cat >"$RUN/swbd.yaml" <<EOF
auth: { enabled: false }
sip:
  listen: ["udp:127.0.0.1:$SIP_PORT"]
  domains: ["127.0.0.1"]
  udp_buffer_bytes: 8388608
admin: { socket: "$RUN/swbd.sock" }
media:
  token_file: "$RUN/media.token"
  health_interval_ms: 1000
  nodes:
    - { name: rtp-a, address: "tcp://127.0.0.1:$CTL_PORT" }
EOF
RUST_LOG=warn setsid "$BIN/swrtp" --config "$RUN/swrtp.yaml" --listen "tcp://127.0.0.1:$CTL_PORT" \
    --media-token-file "$RUN/media.token" --rtp-ports 31000-39000 \
    --admin "unix://$RUN/swrtp.sock" --node-id rtp-a >"$RUN/swrtp.log" 2>&1 </dev/null &
PIDS+=($!)
disown
sleep 0.5
# shellcheck disable=SC2086
env RUST_LOG=warn ${SWBD_ENV:-} setsid "$SWBD" --config "$RUN/swbd.yaml" >"$RUN/swbd.log" 2>&1 </dev/null &
SWBD_PID=$!
disown
PIDS+=("$SWBD_PID")
wait_udp "$SIP_PORT"
sleep 3 # media node health check, start-up allocations settle

BASE=$(rss_kib "$SWBD_PID")
log "swbd $SWBD (pid $SWBD_PID${SWBD_ENV:+, $SWBD_ENV}): baseline RSS $BASE KiB"

# The burst, with RSS sampled every second while it runs.
"$BIN/swbench" calls --server "127.0.0.1:$SIP_PORT" --callees 1000-1999 --callers 2000-2999 \
    --rate "$RATE" --duration "$SECS" --hold "$HOLD" --max-concurrent $((RATE * (HOLD + 5))) \
    --max-seconds $((SECS + HOLD + 60)) --json --watch "swbd=$SWBD_PID" >"$OUT/burst.json" &
GEN=$!
PEAK=0
: >"$OUT/rss.tsv"
T0=$(date +%s)
while kill -0 "$GEN" 2>/dev/null; do
    r=$(rss_kib "$SWBD_PID")
    [ "$r" -gt "$PEAK" ] && PEAK=$r
    printf '%s\t%s\tburst\n' $(($(date +%s) - T0)) "$r" >>"$OUT/rss.tsv"
    sleep 1
done
wait "$GEN" || die "swbench failed (see $OUT/burst.json)"
END=$(rss_kib "$SWBD_PID")
log "burst over: peak RSS $PEAK KiB, at the end $END KiB; waiting ${AFTER}s"
for _ in $(seq 1 "$AFTER"); do
    sleep 1
    printf '%s\t%s\tafter\n' $(($(date +%s) - T0)) "$(rss_kib "$SWBD_PID")" >>"$OUT/rss.tsv"
done
AFTER_KIB=$(rss_kib "$SWBD_PID")
TRIMMED=""
if [ "$TRIM" = 1 ]; then
    gdb -p "$SWBD_PID" -batch -ex 'call (int) malloc_trim(0)' >/dev/null 2>&1 || log "gdb malloc_trim failed"
    sleep 1
    TRIMMED=$(rss_kib "$SWBD_PID")
fi

python3 - "$OUT/burst.json" "$BASE" "$PEAK" "$END" "$AFTER_KIB" "$PER_CALL_KIB" "$RATE" "$HOLD" "$SECS" "$AFTER" "${TRIMMED:-}" <<'PY' | tee "$OUT/summary.txt"
import json, sys
rep = json.load(open(sys.argv[1]))
base, peak, end, after, per_call = (float(x) for x in sys.argv[2:7])
rate, hold, secs, wait = (float(x) for x in sys.argv[7:11])
trimmed = sys.argv[11]
ph = rep["phases"][0]
ok, failed, unfinished = ph["succeeded"], ph["failed"], ph["unfinished"]
cpu = next((p["cpu_s"] for p in rep["processes"] if p["name"] == "swbd"), None)
live_burst = rate * hold
# During: live calls + the finished calls inside the 32 s windows (< 1 KiB each).
expect_burst = base + live_burst * per_call + rate * min(secs, 32) * 1.0
limit = 2 * (base + unfinished * per_call)
mib = lambda k: f"{k / 1024:.1f} MiB"
print(f"burst: {rate:.0f} calls/s for {secs:.0f} s, hold {hold:.0f} s: {ok} ok, {failed} failed, {unfinished} unfinished")
if cpu is not None and ok:
    print(f"swbd CPU: {cpu:.1f} s, {cpu / ok * 1e6:.0f} us per call (registration included)")
print(f"RSS baseline {mib(base)}; peak during the burst {mib(peak)} "
      f"(live ~{live_burst:.0f} calls x {per_call:.0f} KiB + {rate * min(secs, 32):.0f} finished x 1 KiB + baseline = {mib(expect_burst)})")
print(f"RSS at the end of the burst {mib(end)}; {wait:.0f} s later {mib(after)}")
if trimmed:
    print(f"after malloc_trim(0): {mib(float(trimmed))}")
if failed:
    print(f"note: {failed} calls failed (an overloaded machine?); the peak includes their retries")
verdict = "PASS" if after <= limit else "FAIL"
print(f"{verdict}: RSS after {mib(after)} vs 2 x (baseline + {unfinished} live x {per_call:.0f} KiB) = {mib(limit)}")
sys.exit(0 if verdict == "PASS" else 1)
PY
