#!/bin/bash
# CPU per call of swbd and swrtp at a fixed call rate (issue #17).
#
# Starts release swbd + swrtp as scripts/overload.sh does (auth off, one
# media node, no RTP, default CDR/capture settings), then reads utime+stime
# of each daemon from /proc/PID/stat before and after a fixed-rate
# `swbench calls` run and divides by the calls that completed. The run's
# first second registers the 1,000 callees (their contacts are the
# generator's own sockets, so it cannot be done by a separate process):
# ~30 ms of swbd CPU, ~2 us per call at 15,000 calls, counted in. Each run
# starts fresh daemons.
#
#   scripts/cpu-per-call.sh                   1,500 calls/s for 10 s, 3 runs
#   RATE=1500 SECS=10 RUNS=3 HOLD=1 BIN=target/release scripts/cpu-per-call.sh
#   BINS="/tmp/before /work/wt/target/release" RUNS=3 ...
#       alternate two (or more) builds run by run: A B A B A B
#   PERF=1 ...      record swbd with `perf record -F 499 -g` (or PERF_ARGS,
#                   e.g. "-F 199 --call-graph dwarf,16384") during each
#                   run (target/cpu-per-call/perf-<n>.data)
#   NICE=-10        daemons and generator at this nice value (root only)
#
# Run it under the shared CPU lock: flock /tmp/swb-cpu.lock scripts/cpu-per-call.sh
# Everything on 127.0.0.1: SIP 5086, swrtp control 19194, RTP 48000-63999.
# Daemons are stopped at exit by the PIDs recorded here, never by name.
# Output: one line per run (tab-separated) on stdout and in
# target/cpu-per-call/runs.tsv; swbench's JSON per run next to it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
OUT=${OUT:-$ROOT/target/cpu-per-call}
RATE=${RATE:-1500}
SECS=${SECS:-10}
RUNS=${RUNS:-3}
HOLD=${HOLD:-1}
BINS=${BINS:-${BIN:-$ROOT/target/release}}
SIP=127.0.0.1:5086
PRIO=()
[ -n "${NICE:-}" ] && PRIO=(nice -n "$NICE")
RUN=$(mktemp -d /tmp/swcpucall.XXXXXX)
chmod 700 "$RUN"
mkdir -p "$OUT"
ticks() { # PID -> utime+stime in clock ticks (fields 14, 15 after the comm)
    sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'
}
HZ=$(getconf CLK_TCK)

PID_SWBD=""
PID_SWRTP=""
PID_PERF=""
stop_daemons() {
    local p
    for p in $PID_PERF $PID_SWBD $PID_SWRTP; do
        stop_pid "$p"
        wait "$p" 2>/dev/null || true
    done
    PID_SWBD=""
    PID_SWRTP=""
    PID_PERF=""
}
cleanup() {
    trap - EXIT INT TERM
    stop_daemons
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

TOKEN=$RUN/media.token
echo "rtp_timeout_secs: 0" >"$RUN/swrtp.yaml"
cat >"$RUN/swbd.yaml" <<EOF
auth: { enabled: false }
sip:
  listen: ["udp:$SIP"]
  domains: ["127.0.0.1"]
  udp_buffer_bytes: 8388608
admin: { socket: "$RUN/swbd.sock" }
media:
  token_file: "$TOKEN"
  health_interval_ms: 1000
  nodes:
    - { name: rtp-a, address: "tcp://127.0.0.1:19194" }
EOF
start_daemons() { # BIN
    RUST_LOG=warn "${PRIO[@]}" "$1/swrtp" --config "$RUN/swrtp.yaml" --node-id rtp-a \
        --listen tcp://127.0.0.1:19194 --admin "unix://$RUN/swrtp.sock" \
        --media-token-file "$TOKEN" --rtp-ports 48000-63999 >>"$OUT/swrtp.log" 2>&1 &
    PID_SWRTP=$!
    sleep 0.5
    RUST_LOG=warn "${PRIO[@]}" "$1/swbd" --config "$RUN/swbd.yaml" >>"$OUT/swbd.log" 2>&1 &
    PID_SWBD=$!
    sleep 2
    for p in $PID_SWRTP $PID_SWBD; do
        kill -0 "$p" 2>/dev/null || { log "a daemon did not start (see $OUT/*.log)"; exit 1; }
    done
}
: >"$OUT/swbd.log"
: >"$OUT/swrtp.log"
printf 'run\tbin\tstart_utc\tload_avg\tcompleted\tfailed\tswbd_us_per_call\tswrtp_us_per_call\n' >"$OUT/runs.tsv"
cat "$OUT/runs.tsv"
n=0
for r in $(seq 1 "$RUNS"); do
    for bin in $BINS; do
        n=$((n + 1))
        start_daemons "$bin"
        load=$(cut -d' ' -f1 /proc/loadavg)
        start=$(date -u +%H:%M:%S)
        if [ "${PERF:-0}" = 1 ]; then
            perf record ${PERF_ARGS:--F 499 -g} -o "$OUT/perf-$n.data" -p "$PID_SWBD" >/dev/null 2>&1 &
            PID_PERF=$!
        fi
        b_swbd=$(ticks "$PID_SWBD")
        b_swrtp=$(ticks "$PID_SWRTP")
        "${PRIO[@]}" "$bin/swbench" calls --server "$SIP" --callees 1000-1999 --callers 2000-2999 \
            --rate "$RATE" --duration "$SECS" --hold "$HOLD" \
            --max-concurrent 60000 --max-seconds 120 --json >"$OUT/run-$n.json"
        sleep 1 # the last BYEs' transactions
        a_swbd=$(ticks "$PID_SWBD")
        a_swrtp=$(ticks "$PID_SWRTP")
        if [ -n "$PID_PERF" ]; then
            kill -INT "$PID_PERF" 2>/dev/null || true
            wait "$PID_PERF" 2>/dev/null || true
            PID_PERF=""
        fi
        stop_daemons
        python3 - "$OUT/run-$n.json" "$n" "$bin" "$start" "$load" \
            "$((a_swbd - b_swbd))" "$((a_swrtp - b_swrtp))" "$HZ" <<'EOF' | tee -a "$OUT/runs.tsv"
import json, sys
path, n, binp, start, load, swbd, swrtp, hz = sys.argv[1:]
o = json.load(open(path))
done = sum(int(ph["succeeded"]) for ph in o["phases"])
failed = sum(int(ph["failed"]) + int(ph["unfinished"]) for ph in o["phases"])
us = lambda t: f"{int(t) * 1e6 / int(hz) / done:.1f}" if done else "nan"
print("\t".join([n, binp, start, load, str(done), str(failed), us(swbd), us(swrtp)]))
EOF
    done
done
