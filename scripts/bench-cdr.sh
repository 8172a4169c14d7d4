#!/bin/bash
# CDR and capture cost (docs/BENCHMARKS.md, "Call detail records"): the
# same fixed-rate call load (swbench, as scripts/bench.sh runs it: no auth,
# 1 s hold, no RTP) against swbd + swrtp with call detail records and SIP
# capture both off, then both on (JSON-lines file + per-call capture),
# interleaved off/on ROUNDS times in one run. Reports calls/s and swbd CPU
# per call of each run, and the CDR lines written. Issue #16 asks for the
# cost at the sustained call rate: RATE=2000 is below this VM's clean
# capacity (docs/BENCHMARKS.md, "Overload").
#
#   scripts/bench-cdr.sh                 RATE=300 SECS=15 ROUNDS=2
#   BIN=target/release scripts/bench-cdr.sh   use these binaries, skip the build
#   MODES="off cdr capture file"  which modes (cdr: CDR file only; capture:
#                                        SIP capture only; file: both)
#   PERF=1 ...                           also perf-record swbd for 8 s of each run
#   PG=1 scripts/bench-cdr.sh            add a third mode: file + PostgreSQL
#                                        (a throwaway server, as the tests start it;
#                                        MODES="... pg" does the same)
#
# Each run starts fresh swrtp and swbd processes from the same binaries
# with the same flags; only swbd's cdr/capture config differs. Modes are
# interleaved within a round, the order turned by one each round. swbd CPU
# is utime + stime of its /proc/PID/stat (swbench --watch), from the start
# of the load until every call has ended, divided by the completed calls.
# The summary gives per mode the mean, median, min and max over the rounds,
# the cost against `off` on means and on medians, and paired by round (each
# run against the same round's `off`).
#
# Everything listens on 127.0.0.1. Daemons started here are stopped at exit,
# by their recorded PIDs only. Results: target/bench-cdr/*.json, summary.md.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=scripts/lib.sh
. "$ROOT/scripts/lib.sh"
OUT=${OUT:-$ROOT/target/bench-cdr}
RUN=$(mktemp -d /tmp/swbench-cdr.XXXXXX)
RATE=${RATE:-300}
SECS=${SECS:-15}
ROUNDS=${ROUNDS:-2}
PG=${PG:-0}
MODES=${MODES:-off file}
# A `pg` mode needs the throwaway server; PG=1 adds the mode.
case " $MODES " in
    *" pg "*) PG=1 ;;
    *) [ "$PG" = 1 ] && MODES="$MODES pg" ;;
esac
mkdir -p "$OUT"

if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swbench"
    (cd "$ROOT" && cargo build --release -p swbd -p swrtp -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi

SWCTL=${SWCTL:-$BIN/swctl}
[ -x "$SWCTL" ] || SWCTL=$ROOT/target/debug/swctl
PIDS=()
stop_all() { local p; for p in "${PIDS[@]}"; do stop_pid "$p"; done; PIDS=(); }
cleanup() { stop_all; [ -n "${PG_PID:-}" ] && stop_pid "$PG_PID"; rm -rf "$RUN"; }
trap cleanup EXIT INT TERM

PG_URL=""
if [ "$PG" = 1 ]; then
    INITDB=$(compgen -G '/usr/lib/postgresql/*/bin/initdb' | sort -V | tail -1)
    PGBIN=$(dirname "$INITDB")
    mkdir -p "$RUN/pg"
    AS=()
    if [ "$(id -u)" = 0 ]; then chown postgres "$RUN/pg"; chmod 755 "$RUN"; AS=(runuser -u postgres --); fi
    "${AS[@]}" "$PGBIN/initdb" -D "$RUN/pg" -U swbd -A trust --no-sync >/dev/null
    "${AS[@]}" "$PGBIN/postgres" -D "$RUN/pg" -p 5499 -k "$RUN/pg" -c listen_addresses=127.0.0.1 >"$RUN/pg.log" 2>&1 &
    PG_PID=$!
    for _ in $(seq 1 100); do "$PGBIN/pg_isready" -h 127.0.0.1 -p 5499 >/dev/null 2>&1 && break; sleep 0.1; done
    PG_URL="postgresql://swbd@127.0.0.1:5499/postgres"
fi

cdr_yaml() { # MODE
    case $1 in
        off) echo "cdr: { file: { enabled: false } }"; echo "capture: { enabled: false }" ;;
        file) echo "cdr: { file: { path: \"$RUN/cdr-$2.jsonl\" } }"; echo "capture: { enabled: true }" ;;
        cdr) echo "cdr: { file: { path: \"$RUN/cdr-$2.jsonl\" } }"; echo "capture: { enabled: false }" ;;
        capture) echo "cdr: { file: { enabled: false } }"; echo "capture: { enabled: true }" ;;
        pg) echo "cdr: { file: { path: \"$RUN/cdr-$2.jsonl\" }, postgres: { url: \"$PG_URL\" } }"; echo "capture: { enabled: true }" ;;
    esac
}

proc_counts() { # PID: minor page faults, context switches (all threads)
    local minflt cs
    minflt=$(sed 's/.*) //' "/proc/$1/stat" | cut -d' ' -f8)
    cs=$(cat /proc/"$1"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s + 0}')
    echo "$minflt $cs"
}

run_one() { # MODE ROUND
    local mode=$1 r=$2 cfg="$RUN/swbd-$1-$2.yaml"
    cat >"$cfg" <<EOF
auth: { enabled: false }
sip: { listen: ["udp:127.0.0.1:5080"], domains: ["127.0.0.1"], udp_buffer_bytes: 8388608 }
admin: { socket: "$RUN/swbd.sock" }
media:
  token_file: "$RUN/media.token"
  nodes: [{ name: rtp-a, address: "tcp://127.0.0.1:9090" }]
$(cdr_yaml "$mode" "$r")
EOF
    echo "rtp_timeout_secs: 0" >"$RUN/swrtp.yaml"
    RUST_LOG=warn start_bg swrtp "$BIN/swrtp" --config "$RUN/swrtp.yaml" --listen tcp://127.0.0.1:9090 \
        --media-token-file "$RUN/media.token" --rtp-ports 10000-30000 \
        --admin "unix://$RUN/swrtp.sock" --node-id rtp-a
    sleep 0.5
    RUST_LOG=${SWBD_LOG:-warn} start_bg swbd "$BIN/swbd" --config "$cfg"
    wait_udp 5080
    sleep 2
    log "round $r, CDR $mode: $RATE calls/s for ${SECS}s, load $(cut -d' ' -f1-3 /proc/loadavg)"
    cut -d' ' -f1-3 /proc/loadavg >"$OUT/load-$mode-$r.txt"
    if [ "${PERF:-0}" = 1 ]; then
        # Where swbd's CPU goes during the middle of the run (perf record
        # of swbd only; `perf report -i $OUT/perf-MODE-ROUND.data`).
        (sleep 3; perf record -q -F 499 -g -p "$(cat "$RUN/swbd.pid")" -o "$OUT/perf-$mode-$r.data" -- sleep 8 >/dev/null 2>&1) &
    fi
    local swbd_pid; swbd_pid=$(cat "$RUN/swbd.pid")
    proc_counts "$swbd_pid" >"$OUT/counts-before-$mode-$r.txt"
    "$BIN/swbench" calls --server 127.0.0.1:5080 --callees 1000-1999 --callers 2000-2999 \
        --rate "$RATE" --duration "$SECS" --hold 1 --json --max-seconds 120 \
        --watch "swbd=$(cat "$RUN/swbd.pid")" --watch "swrtp=$(cat "$RUN/swrtp.pid")" \
        >"$OUT/calls-$mode-$r.json"
    proc_counts "$swbd_pid" >"$OUT/counts-after-$mode-$r.txt"
    sleep 2
    # swbd's own CDR counters (written_file, written_postgres, failed).
    if [ -x "$SWCTL" ]; then
        "$SWCTL" --host "unix://$RUN/swbd.sock" status -o json >"$OUT/status-$mode-$r.json" 2>/dev/null || true
    fi
    local lines=0
    [ -f "$RUN/cdr-$r.jsonl" ] && lines=$(wc -l <"$RUN/cdr-$r.jsonl")
    echo "$lines" >"$OUT/cdr-lines-$mode-$r.txt"
    rm -f "$RUN/cdr-$r.jsonl"*
    stop_all
    cp "$RUN/swbd.log" "$OUT/swbd-$mode-$r.log" 2>/dev/null || true
}

# Interleaved, and the order turned by one each round (round 2 of
# "off cdr capture file" runs cdr capture file off): no mode always runs
# first or right after the same other one.
read -r -a ORDER <<<"$MODES"
for r in $(seq 1 "$ROUNDS"); do
    n=${#ORDER[@]}
    for i in $(seq 0 $((n - 1))); do run_one "${ORDER[$(((i + r - 1) % n))]}" "$r"; done
done

python3 - "$OUT" "$ROUNDS" "$MODES" "$RATE" "$SECS" <<'PY' | tee "$OUT/summary.md"
import json, statistics, sys
out, rounds, modes, rate, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(), sys.argv[4], sys.argv[5]
nan = float("nan")
print(f"Offered {rate} calls/s for {secs} s, hold 1 s, no RTP, auth off; rounds interleaved.\n")
print("off: CDRs and SIP capture off; cdr: CDR file only; capture: SIP capture only; file: CDR file + capture on; pg: CDR file + PostgreSQL + capture on.\n")
print("CPU: utime + stime from /proc/PID/stat (swbench --watch), from the start of the load until every call ended. "
      "ref: swrtp + generator CPU of the same run (the same work in every mode); swbd / ref cancels what slows the whole machine.\n")
print("| round | mode | load (1/5/15 min) | calls/s | failed | swbd CPU s | swbd CPU per call | ref CPU s | swbd / ref | page faults / call | ctx switches / call | file lines | swbd: written file / postgres / lost |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")

def run(m, r):
    j = json.load(open(f"{out}/calls-{m}-{r}.json"))
    ph = j["phases"][-1]
    cpu = {p["name"]: p["cpu_s"] for p in j["processes"]}
    ref = cpu.get("swrtp", nan) + (j.get("generator_cpu_s") or nan)
    ok = ph["succeeded"]
    per = cpu.get("swbd", nan) / ok * 1e6 if ok else nan
    return j, ph, cpu.get("swbd", nan), ref, per

per_mode, ratio_mode, paired, paired_ratio = {}, {}, {}, {}
for r in range(1, rounds + 1):
    for m in modes:
        j, ph, cpu, ref, per = run(m, r)
        ok = ph["succeeded"]
        load = open(f"{out}/load-{m}-{r}.txt").read().strip()
        lines = open(f"{out}/cdr-lines-{m}-{r}.txt").read().strip()
        try:
            c = json.load(open(f"{out}/status-{m}-{r}.json"))[0].get("cdr")
            counted = f"{c['written_file']} / {c['written_postgres']} / {c['failed']}" if c else "-"
        except (OSError, ValueError, IndexError, KeyError):
            counted = "-"
        try:
            b = [int(x) for x in open(f"{out}/counts-before-{m}-{r}.txt").read().split()]
            a = [int(x) for x in open(f"{out}/counts-after-{m}-{r}.txt").read().split()]
            faults, switches = ((a[0] - b[0]) / ok, (a[1] - b[1]) / ok) if ok else (nan, nan)
        except (OSError, ValueError, IndexError):
            faults = switches = nan
        print(f"| {r} | {m} | {load} | {ph.get('sustained_rate') or 0:.0f} | {ph['failed']} | {cpu:.2f} | {per:.0f} us | {ref:.2f} | {cpu / ref:.3f} | {faults:.1f} | {switches:.1f} | {lines} | {counted} |")
        per_mode.setdefault(m, []).append(per)
        ratio_mode.setdefault(m, []).append(cpu / ref)
        # Against the same round's `off` run.
        if m != "off" and "off" in modes:
            _, oph, ocpu, oref, oper = run("off", r)
            paired.setdefault(m, []).append(per / oper - 1)
            paired_ratio.setdefault(m, []).append((cpu / ref) / (ocpu / oref) - 1)

def costs(values, pairs, fmt):
    print("\n| mode | runs | mean | median | min | max | vs off (means) | vs off (medians) | paired by round: median (min..max) |")
    print("|---|---|---|---|---|---|---|---|---|")
    base = values.get("off")
    for m in modes:
        v = values[m]
        mean, med = statistics.mean(v), statistics.median(v)
        if base and m != "off":
            vs_mean = f"{mean / statistics.mean(base) - 1:+.1%}"
            vs_med = f"{med / statistics.median(base) - 1:+.1%}"
            p = pairs.get(m, [])
            vs_pair = f"{statistics.median(p):+.1%} ({min(p):+.1%}..{max(p):+.1%})" if p else "-"
        else:
            vs_mean = vs_med = vs_pair = "-"
        print(f"| {m} | {len(v)} | {fmt(mean)} | {fmt(med)} | {fmt(min(v))} | {fmt(max(v))} | {vs_mean} | {vs_med} | {vs_pair} |")

print("\nswbd CPU per completed call:")
costs(per_mode, paired, lambda x: f"{x:.0f} us")
print("\nswbd CPU / ref CPU (swrtp + generator, same run):")
costs(ratio_mode, paired_ratio, lambda x: f"{x:.3f}")
PY
