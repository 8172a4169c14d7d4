#!/bin/bash
# Overload: find swbd + swrtp's clean capacity (calls/s with zero failures,
# searched with overload control off, as scripts/bench.sh measured it
# before there was any), then offer twice that for 20 s and report what
# came of it (issue #14, "overload control"), then half of it for 5 s
# (does the rate come back?).
#
#   scripts/overload.sh                  build release binaries, run
#   BIN=target/release scripts/overload.sh
#   BASELINE=1 ...   also run the 2x phase with sip.overload.enabled: false
#   OVERLOAD_EXTRA="setup_budget_ms: 25"  more sip.overload keys for the
#                    control-on run
#   RATE_LAW=1 ...   also run it with the setup-work cap off
#                    (sip.overload.setup_budget_ms: 0: the rate law alone)
#   CAPACITY=2400 ...  skip the search, use this clean capacity
#   CAPACITY_ONLY=1    only the search
#   RAMP=1600:200:4000:4  the search (START:STEP:MAX:SECONDS per step)
#   FACTOR=2 SECS=20 HOLD=1 GEN_THREADS=1
#   SWBD_LOG=warn,swbd::overload=debug  swbd log filter (the overload trace)
#   UDP_WORKERS=1    swbd's sip.udp_workers (unset: its default, one per
#                    CPU; 1: the receive task handles what it reads, as
#                    before the workers)
#   NICE=-10         run the daemons and the generator at this nice value
#                    (root only): on a machine other work shares, so the
#                    numbers are about them and not about the neighbours
#   SAMPLE=0         do not sample swbd's overload status every 0.5 s
#                    (swctl status -o json; the samples cost ~2% of a core)
#
# Calls without RTP and without auth (as scripts/bench.sh's calls/s phase),
# UAC and UAS in one swbench process on the same cores as the daemons. Each
# generator run is bounded (--max-seconds 120). Everything on 127.0.0.1:
# SIP 5082, swrtp control 19190, RTP ports 40000-63999 (clear of the test
# harnesses' 20000-39999; soak.sh uses 40000-47999, do not run both).
# Daemons are stopped at exit by the PIDs recorded here, never by name.
# Results: target/overload/*.json and target/overload/summary.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
OUT=${OUT:-$ROOT/target/overload}
RUN=$(mktemp -d /tmp/swoverload.XXXXXX)
chmod 700 "$RUN"
mkdir -p "$OUT"
FACTOR=${FACTOR:-2}
SECS=${SECS:-20}
HOLD=${HOLD:-1}
RAMP=${RAMP:-1600:200:4000:4}
GEN_THREADS=${GEN_THREADS:-1}
PRIO=()
[ -n "${NICE:-}" ] && PRIO=(nice -n "$NICE")
SIP=127.0.0.1:5082
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swctl, swbench"
    (cd "$ROOT" && cargo build --release -q -p swbd -p swrtp -p swctl -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

PID_SWBD=""
PID_SWRTP=""
stop_daemons() {
    local p i
    for p in $PID_SWBD $PID_SWRTP; do
        kill -TERM "$p" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    PID_SWBD=""
    PID_SWRTP=""
}
cleanup() {
    trap - EXIT INT TERM
    stop_daemons
    rm -rf "$RUN"
}
trap cleanup EXIT INT TERM

TOKEN=$RUN/media.token
echo "rtp_timeout_secs: 0" >"$RUN/swrtp.yaml"
# A build from before overload control knows no sip.overload: leave it out
# (its 2x run is then the "before" of docs/BENCHMARKS.md).
OVERLOAD_KEY=1
printf 'sip:\n  overload: { enabled: true }\nmedia: { nodes: [] }\n' >"$RUN/probe.yaml"
if ! "$BIN/swbd" --check-config --config "$RUN/probe.yaml" >/dev/null 2>&1; then
    OVERLOAD_KEY=0
    log "this swbd has no sip.overload; running it as it is"
fi
start_daemons() { # OVERLOAD_ENABLED(true|false) [EXTRA overload keys]
    RUST_LOG=warn "${PRIO[@]}" "$BIN/swrtp" --config "$RUN/swrtp.yaml" --node-id rtp-a \
        --listen tcp://127.0.0.1:19190 --admin "unix://$RUN/swrtp.sock" \
        --media-token-file "$TOKEN" --rtp-ports 40000-63999 >>"$OUT/swrtp.log" 2>&1 &
    PID_SWRTP=$!
    sleep 0.5
    local overload=""
    [ "$OVERLOAD_KEY" = 1 ] && overload="  overload: { enabled: $1${2:+, $2} }"
    cat >"$RUN/swbd.yaml" <<EOF
auth: { enabled: false }
sip:
  listen: ["udp:$SIP"]
  domains: ["127.0.0.1"]
  udp_buffer_bytes: 8388608
${UDP_WORKERS:+  udp_workers: $UDP_WORKERS}
$overload
admin: { socket: "$RUN/swbd.sock" }
media:
  token_file: "$TOKEN"
  health_interval_ms: 1000
  nodes:
    - { name: rtp-a, address: "tcp://127.0.0.1:19190" }
EOF
    RUST_LOG=${SWBD_LOG:-warn} "${PRIO[@]}" "$BIN/swbd" --config "$RUN/swbd.yaml" >>"$OUT/swbd.log" 2>&1 &
    PID_SWBD=$!
    sleep 2.5
    for p in $PID_SWRTP $PID_SWBD; do
        kill -0 "$p" 2>/dev/null || { log "a daemon did not start (see $OUT/*.log)"; exit 1; }
    done
}
calls() { # OUT ARGS...
    local out=$1; shift
    "${PRIO[@]}" "$BIN/swbench" calls --server "$SIP" --callees 1000-1999 --callers 2000-2999 \
        --hold "$HOLD" --max-concurrent 60000 --threads "$GEN_THREADS" \
        --json --max-seconds 120 \
        --watch "swbd=$PID_SWBD" --watch "swrtp=$PID_SWRTP" "$@" >"$out"
}
swbd_status() { # OUT
    "$BIN/swctl" --host "unix://$RUN/swbd.sock" status -o json >"$1" 2>/dev/null || echo '[]' >"$1"
}
# Every 0.5 s while PID runs: seconds, refused share, delay, receive
# backlog, scheduling lag, media queueing (ms), the admission limit (calls/s,
# 0: none), calls in setup, INVITEs refused so far, setup work and its cap.
cat >"$RUN/sample.py" <<'EOF'
import json, sys
t = float(sys.argv[1]) - float(sys.argv[2])
try:
    o = json.load(sys.stdin)[0].get("overload") or {}
except (ValueError, IndexError):
    sys.exit(0)
cols = [o.get("refused_share", 0), o.get("delay_ms", 0), o.get("receive_backlog_ms", 0),
        o.get("scheduling_lag_ms", 0), o.get("media_queueing_ms", 0), o.get("admission_limit") or 0]
print("\t".join([f"{t:.2f}"] + [f"{c:.3f}" for c in cols]
                + [str(o.get(k, 0)) for k in ["calls_in_setup", "invites_refused", "setup_work",
                                              "setup_work_cap"]]))
EOF
sample_while() { # PID OUT
    local t0 now
    t0=$(date +%s.%N)
    printf 't_s\trefused_share\tdelay_ms\tbacklog_ms\tlag_ms\tmedia_ms\tlimit_per_s\tcalls_in_setup\tinvites_refused\tsetup_work\tsetup_work_cap\n' >"$2"
    while kill -0 "$1" 2>/dev/null; do
        now=$(date +%s.%N)
        "$BIN/swctl" --host "unix://$RUN/swbd.sock" status -o json 2>/dev/null \
            | python3 "$RUN/sample.py" "$now" "$t0" >>"$2" || true
        sleep 0.5
    done
}
sampled_calls() { # OUT SAMPLES ARGS...
    local out=$1 samples=$2; shift 2
    if [ "${SAMPLE:-1}" = 1 ] && [ "$OVERLOAD_KEY" = 1 ]; then
        calls "$out" "$@" &
        local gen=$!
        sample_while "$gen" "$samples"
        wait "$gen"
    else
        calls "$out" "$@"
    fi
}

: >"$OUT/swbd.log"
: >"$OUT/swrtp.log"
echo "load_average_start=$(loadavg)" >"$OUT/env.txt"

# ---- 1. the clean capacity --------------------------------------------------
if [ -z "${CAPACITY:-}" ]; then
    log "1. clean capacity: ramp $RAMP, overload control off (load average $(loadavg))"
    start_daemons false
    sampled_calls "$OUT/capacity.json" "$OUT/capacity-samples.tsv" --ramp "$RAMP"
    stop_daemons
    CAPACITY=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["sustained_rate"] or 0))' "$OUT/capacity.json")
fi
[ "$CAPACITY" -gt 0 ] || { log "no clean step in the ramp; give CAPACITY="; exit 1; }
if [ "${CAPACITY_ONLY:-0}" = 1 ]; then
    log "clean capacity $CAPACITY calls/s (CAPACITY_ONLY=1: done)"
    exit 0
fi
OFFER=$(( CAPACITY * FACTOR ))
HALF=$(( CAPACITY / 2 ))
log "clean capacity $CAPACITY calls/s; offering $OFFER calls/s for $SECS s"

# ---- 2. FACTOR x capacity, then half of it ----------------------------------
run_overload() { # TAG ENABLED [EXTRA overload keys]
    log "2. $1: $OFFER calls/s for $SECS s, overload control $2 ${3:-} (load average $(loadavg))"
    echo "load_average_$1=$(loadavg)" >>"$OUT/env.txt"
    start_daemons "$2" "${3:-}"
    sampled_calls "$OUT/$1.json" "$OUT/$1-samples.tsv" --rate "$OFFER" --duration "$SECS"
    log "   then $HALF calls/s for 5 s"
    sampled_calls "$OUT/$1-after.json" "$OUT/$1-after-samples.tsv" --rate "$HALF" --duration 5
    swbd_status "$OUT/$1-status.json"
    stop_daemons
}
run_overload overload true "${OVERLOAD_EXTRA:-}"
if [ "${RATE_LAW:-0}" = 1 ]; then
    run_overload ratelaw true "setup_budget_ms: 0"
fi
if [ "${BASELINE:-0}" = 1 ]; then
    run_overload baseline false
fi
echo "load_average_end=$(loadavg)" >>"$OUT/env.txt"

# ---- 3. the report -------------------------------------------------------------
python3 - "$OUT" "$CAPACITY" "$OFFER" <<'EOF' | tee "$OUT/summary.md"
import json, os, sys
out, capacity, offer = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
env = dict(l.strip().split("=", 1) for l in open(os.path.join(out, "env.txt")) if "=" in l)
print(f"clean capacity: {capacity} calls/s; offered {offer} calls/s")
print(f"load average: {env}")
print()
print("| run | offered/s | attempted/s | completed | completed calls/s | / clean capacity | setup p50 / p99 of admitted, ms | final codes and failures | INVITEs refused by swbd |")
print("|---|---|---|---|---|---|---|---|---|")
for tag in ["overload", "ratelaw", "baseline"]:
    for part, label in [(tag, f"{tag}, {offer}/s"), (f"{tag}-after", f"{tag}, then {capacity // 2}/s")]:
        path = os.path.join(out, part + ".json")
        if not os.path.exists(path):
            continue
        r = json.load(open(path))
        p = r["phases"][0]
        rate = p["sustained_rate"] or 0.0
        s = p["setup_latency"]
        codes = {"200": p["succeeded"]}
        codes.update(p["failures"])
        refused = ""
        st = os.path.join(out, tag + "-status.json")
        if part == tag and os.path.exists(st):
            try:
                v = json.load(open(st))
                o = (v[0].get("overload") or {}) if v else {}
                refused = str(o.get("invites_refused", ""))
            except (ValueError, IndexError, KeyError):
                pass
        fmt = lambda x: "-" if x is None else f"{x:.1f}"
        print(f"| {label} | {p['offered_rate']:.0f} | {p['attempted_rate'] or 0:.0f} | {p['succeeded']} | {rate:.0f} | {rate / capacity:.2f} | {fmt(s['p50_ms'])} / {fmt(s['p99_ms'])} | {json.dumps(codes, sort_keys=True)} | {refused} |")
EOF
log "results in $OUT"
