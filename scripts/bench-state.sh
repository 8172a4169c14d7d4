#!/bin/bash
# Shared state cost (docs/BENCHMARKS.md, "Shared state (issue #18)"): in ONE
# run, for three setups
#   memory   one swbd, state.backend: memory
#   redis    one swbd, state.backend: redis (a throwaway redis-server)
#   redis2   two swbd on that one Redis (node ids swbd-1, swbd-2), the load
#            spread round-robin over their two SIP addresses by one
#            generator (`swbench --also-server`: the same generator as the
#            one-swbd setups, one ramp, one failure criterion for the pair);
#            GENERATORS=2 splits it between two generators instead
# measure (a) REGISTER/s with digest auth (swbench register, closed loop,
# 200 in flight per generator) and (b) sustained calls/s (swbench calls
# --ramp: stepped rate, stops at the first step with a failure; auth off as
# in scripts/bench.sh, hold 1 s, no RTP). One swrtp serves every setup.
#
#   scripts/bench-state.sh                     REG_SECS=5 RAMP=200:200:3000:4
#   BIN=target/release scripts/bench-state.sh  use these binaries, skip the build
#   REDIS2_WORKER_THREADS=1 ...                 runtime threads of each of the two swbd
#   PHASES=register ...                         REGISTER/s only (or calls)
#   ROUNDS=3 ...                                every setup ROUNDS times, interleaved;
#                                               the summary gives medians
#
# Everything listens on 127.0.0.1. Daemons started here are stopped at exit,
# by their recorded PIDs only. Results: target/bench-state/*.json, summary.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
OUT=${OUT:-$ROOT/target/bench-state}
RUN=$(mktemp -d /tmp/swbench-state.XXXXXX)
REG_SECS=${REG_SECS:-5}
RAMP=${RAMP:-200:200:3000:4}
MODES=${MODES:-memory redis redis2}
PHASES=${PHASES:-register calls}  # which measurements each round makes
ROUNDS=${ROUNDS:-1}
GENERATORS=${GENERATORS:-1}  # redis2: 1 (round-robin over both swbd) or 2
# redis2: runtime worker threads per swbd (`--worker-threads`); default: the
# cores split between the two (nproc / 2, at least 1), as an operator would
# configure two swbd on one machine; 0: each takes one thread per core
REDIS2_WORKER_THREADS=${REDIS2_WORKER_THREADS:-$(( $(nproc) / 2 > 0 ? $(nproc) / 2 : 1 ))}
REDIS_PORT=${REDIS_PORT:-6391}
SIP_BASE=${SIP_BASE:-5180}   # swbd-N listens on udp 127.0.0.1:SIP_BASE+N
RTP_CTL=${RTP_CTL:-9190}     # swrtp control port
METRICS_BASE=${METRICS_BASE:-9470}  # swbd-N serves /metrics on 127.0.0.1:METRICS_BASE+N
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/*.txt "$OUT"/*.log
command -v redis-server >/dev/null || { log "redis-server is missing (apt-get install redis-server)"; exit 1; }

if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swbench"
    (cd "$ROOT" && cargo build --release -p swbd -p swrtp -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

PIDS=()
SWBD_PIDS=()
stop_swbd() { local p; for p in "${SWBD_PIDS[@]}"; do stop_pid "$p"; done; SWBD_PIDS=(); }
cleanup() { local p; stop_swbd; for p in "${PIDS[@]}"; do stop_pid "$p"; done; cp "$RUN"/*.log "$OUT"/ 2>/dev/null || true; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM

USERS="$RUN/users.yaml"
python3 -c '
print("users:")
for u in range(1000, 4000):
    print(f"  - {{ username: \"{u}\", password: \"pw{u}\" }}")' >"$USERS"

# One swrtp for every setup; one Redis (no persistence) for the redis ones.
echo "rtp_timeout_secs: 0" >"$RUN/swrtp.yaml"
RUST_LOG=warn start_bg swrtp "$BIN/swrtp" --config "$RUN/swrtp.yaml" --listen tcp://127.0.0.1:$RTP_CTL \
    --media-token-file "$RUN/media.token" --rtp-ports 10000-30000 \
    --admin "unix://$RUN/swrtp.sock" --node-id rtp-a
wait_tcp "$RTP_CTL"
start_bg redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$RUN"
wait_tcp "$REDIS_PORT"

swbd_config() { # INSTANCE(1|2) AUTH(true|false) BACKEND -> path
    local cfg="$RUN/swbd-$1-$2-$3.yaml" state="state: { backend: memory }"
    # Each setup its own key prefix (a fresh store); redis2's two instances share it.
    [ "$3" = redis ] && state="state: { backend: redis, redis: { url: \"redis://127.0.0.1:$REDIS_PORT\", prefix: \"$PREFIX\" } }"
    cat >"$cfg" <<EOF
node_id: swbd-$1
auth: { enabled: $2, realm: switchboard, users_file: $USERS, algorithms: [md5], max_failures: 1000000 }
sip: { listen: ["udp:127.0.0.1:$((SIP_BASE + $1))"], domains: ["127.0.0.1"], udp_buffer_bytes: 8388608 }
admin: { socket: "$RUN/swbd-$1.sock" }
metrics: { listen: "127.0.0.1:$((METRICS_BASE + $1))" }
media:
  token_file: "$RUN/media.token"
  health_interval_ms: 1000
  nodes: [{ name: rtp-a, address: "tcp://127.0.0.1:$RTP_CTL" }]
cdr: { file: { enabled: false } }
$state
EOF
    echo "$cfg"
}
start_swbds() { # COUNT AUTH BACKEND
    local i
    for i in $(seq 1 "$1"); do
        local threads=()
        [ "$1" = 2 ] && threads=(--worker-threads "$REDIS2_WORKER_THREADS")
        RUST_LOG=${SWBD_LOG:-warn} setsid "$BIN/swbd" --config "$(swbd_config "$i" "$2" "$3")" "${threads[@]}" >>"$RUN/swbd-$i.log" 2>&1 </dev/null &
        SWBD_PIDS+=($!)
        wait_udp "$((SIP_BASE + i))"
    done
    sleep 2
}
watch_args() { local i=1 p; for p in "${SWBD_PIDS[@]}"; do echo --watch "swbd$i=$p"; i=$((i + 1)); done; }

run_mode() { # MODE ROUND
    local mode=$1 round=$2 count=1 backend=$1 i
    [ "$mode" = redis2 ] && count=2 backend=redis
    PREFIX="bench-$mode-$round-$$:"
    # Users split between the generators: 3000 to register, 1000 callees + 1000 callers.
    local reg=(1000-3999) callees=(1000-1999) callers=(2000-2999) gens_n=1 also=() gens=()
    if [ "$count" = 2 ] && [ "$GENERATORS" = 2 ]; then
        gens_n=2 reg=(1000-2499 2500-3999) callees=(1000-1499 1500-1999) callers=(2000-2499 2500-2999)
    elif [ "$count" = 2 ]; then
        also=(--also-server "127.0.0.1:$((SIP_BASE + 2))")
    fi

    if [[ " $PHASES " == *" register "* ]]; then
        start_swbds "$count" true "$backend"
        cut -d' ' -f1-3 /proc/loadavg >"$OUT/load-$mode-r$round-register.txt"
        log "round $round, $mode: REGISTER with auth, ${REG_SECS}s, load $(cat "$OUT/load-$mode-r$round-register.txt")"
        gens=()
        # shellcheck disable=SC2046
        for i in $(seq 1 "$gens_n"); do
            "$BIN/swbench" register --server "127.0.0.1:$((SIP_BASE + i))" "${also[@]}" --users "${reg[$((i - 1))]}" --rate 0 \
                --max-concurrent 200 --duration "$REG_SECS" --json --max-seconds 60 \
                $(watch_args) >"$OUT/register-$mode-r$round-$i.json" &
            gens+=($!)
        done
        wait "${gens[@]}"
        stop_swbd
    fi

    [[ " $PHASES " == *" calls "* ]] || return 0
    start_swbds "$count" false "$backend"
    cut -d' ' -f1-3 /proc/loadavg >"$OUT/load-$mode-r$round-calls.txt"
    log "round $round, $mode: calls/s ramp $RAMP, load $(cat "$OUT/load-$mode-r$round-calls.txt")"
    gens=()
    # shellcheck disable=SC2046
    for i in $(seq 1 "$gens_n"); do
        "$BIN/swbench" calls --server "127.0.0.1:$((SIP_BASE + i))" "${also[@]}" --callees "${callees[$((i - 1))]}" \
            --callers "${callers[$((i - 1))]}" --ramp "$RAMP" --hold 1 --json --max-seconds 300 \
            $(watch_args) >"$OUT/calls-$mode-r$round-$i.json" &
        gens+=($!)
    done
    wait "${gens[@]}"
    stop_swbd
    sleep 1
}

for r in $(seq 1 "$ROUNDS"); do for m in $MODES; do run_mode "$m" "$r"; done; done

CMD="MODES=\"$MODES\" PHASES=\"$PHASES\" ROUNDS=$ROUNDS GENERATORS=$GENERATORS REDIS2_WORKER_THREADS=$REDIS2_WORKER_THREADS REG_SECS=$REG_SECS RAMP=$RAMP scripts/bench-state.sh"
python3 - "$OUT" "$CMD" "$MODES" "$ROUNDS" <<'PY' | tee "$OUT/summary.md"
import glob, json, statistics, sys
out, cmd, modes, rounds = sys.argv[1], sys.argv[2], sys.argv[3].split(), int(sys.argv[4])
def runs(kind, mode, r):
    return [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{kind}-{mode}-r{r}-*.json"))]
def load(mode, r, kind):
    try:
        return open(f"{out}/load-{mode}-r{r}-{kind}.txt").read().strip()
    except OSError:
        return "-"
def swbd_cpu(gens):
    # Every generator watches every swbd: count each process once.
    return sum(p["cpu_s"] for p in gens[0]["processes"]) if gens else 0.0
print(f"Command: `{cmd}` (release binaries, 127.0.0.1, one swrtp, one redis-server without persistence).\n")
print("| round | setup | load (1/5/15) | REGISTER/s (auth) | failed | swbd CPU per REGISTER | calls/s sustained | swbd CPU per call (ramp) | last step failures |")
print("|---|---|---|---|---|---|---|---|---|")
reg_by, cps_by = {m: [] for m in modes}, {m: [] for m in modes}
for r in range(1, rounds + 1):
    for m in modes:
        regs, calls = runs("register", m, r), runs("calls", m, r)
        if not regs and not calls:
            continue
        reg = sum(x["registrations_per_s"] for x in regs)
        regn = sum(x["succeeded"] for x in regs)
        regf = sum(x["failed"] for x in regs)
        cps = sum((c.get("sustained_rate") or 0) for c in calls)
        done = sum(p["succeeded"] for c in calls for p in c["phases"])
        per = " + ".join(f"{(c.get('sustained_rate') or 0):.0f}" for c in calls)
        last = "; ".join(
            f"{c['phases'][-1]['offered_rate']:.0f}/s: {c['phases'][-1]['failures']}"
            for c in calls if c["phases"] and (c["phases"][-1]["failed"] or c["phases"][-1]["unfinished"]))
        if regs:
            reg_by[m].append(reg)
        if calls:
            cps_by[m].append(cps)
        cpu_reg = swbd_cpu(regs) / regn * 1e6 if regn else 0
        cpu_call = swbd_cpu(calls) / done * 1e6 if done else 0
        shown = f"{cps:.0f}" + (f" ({per})" if len(calls) > 1 else "")
        print(f"| {r} | {m} | {load(m, r, 'register')} | {reg:.0f} | {regf} | {cpu_reg:.0f} us | {shown} | {cpu_call:.0f} us | {last or '-'} |")
med = {m: (statistics.median(reg_by[m]) if reg_by[m] else 0, statistics.median(cps_by[m]) if cps_by[m] else 0) for m in modes}
print(f"\nMedians over {rounds} round(s):")
for m in modes:
    print(f"- {m}: {med[m][0]:.0f} REGISTER/s, {med[m][1]:.0f} calls/s")
def ratio(a, b, i):
    return f"{med[a][i] / med[b][i]:.2f}x" if a in med and b in med and med[b][i] else None
def cost(i):
    return f"{(1 - med['redis'][i] / med['memory'][i]) * 100:.0f}%" if "memory" in med and "redis" in med and med["memory"][i] else None
def paired(a, b, by):
    # Round by round (the VM's speed drifts between rounds; a round's setups run back to back).
    rs = [x / y for x, y in zip(by[a], by[b]) if y] if a in by and b in by else []
    return f" (by round {', '.join(f'{r:.2f}' for r in rs)}; median {statistics.median(rs):.2f}x)" if rs else ""
if cost(1) or cost(0):
    print(f"\nRedis cost vs memory (medians): calls/s {cost(1) or '-'}, REGISTER/s {cost(0) or '-'} (target < 20%).")
if ratio("redis2", "redis", 1):
    print(f"Two swbd vs one (both Redis, medians): {ratio('redis2', 'redis', 1)} calls/s{paired('redis2', 'redis', cps_by)} (target >= 1).")
if ratio("redis2", "redis", 0):
    print(f"Two swbd vs one (both Redis, medians): {ratio('redis2', 'redis', 0)} REGISTER/s{paired('redis2', 'redis', reg_by)} (target >= 1).")
PY
