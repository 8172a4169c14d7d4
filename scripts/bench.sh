#!/bin/bash
# Reproduce every number in docs/BENCHMARKS.md ("Load" section): swbd + swrtp against
# Kamailio (+ rtpengine) on loopback, each measured in the same run.
#
#   scripts/bench.sh            full run (~15 min on 2 cores)
#   QUICK=1 scripts/bench.sh    smoke version (short steps, 100 calls with RTP)
#   PROFILE=1 scripts/bench.sh  also perf-record swbd and swrtp (needs perf)
#   BIN=target/debug ...        use these binaries, skip the release build
#   PIN=0 scripts/bench.sh      do not pin the RTP phase to cores (see below)
#   SKIP=reg,cps,rtp,lat,kam    leave out phases (kam: every Kamailio run)
#   RAMP=FROM:STEP:TO:SECS      the calls/s ramp (default 100:100:8000:10: it stops
#                               at each system's first failing step, so no ceiling)
#   KAM_SHM_MB=1024 KAM_PKG_MB=16 KAM_CHILDREN=2*nproc   the peer's sizing; a run in
#                               which the peer logged a resource error fails (exit 3)
#   MEDIA_CPU=0 GEN_CPU=1       the cores the RTP phase pins to (defaults)
#
# Needs: Debian 12 (apt-get as root installs kamailio and rtpengine-daemon
# when missing), cargo, python3. Everything listens on 127.0.0.1 only.
# Results: target/bench/*.json and target/bench/summary.md.
# Daemons started here are stopped at exit, by their recorded PIDs only.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS="$ROOT/bench/peers"
OUT=${OUT:-$ROOT/target/bench}
PIDDIR=/tmp/swbench-pids
LOGDIR=/tmp/swbench-logs
RUNDIR=/tmp/swbench-run
QUICK=${QUICK:-0}
PROFILE=${PROFILE:-0}
mkdir -p "$OUT" "$PIDDIR" "$LOGDIR" "$RUNDIR"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# ---- 1. peers from Debian ---------------------------------------------------
if ! command -v kamailio >/dev/null || ! command -v rtpengine >/dev/null; then
    log "installing kamailio and rtpengine-daemon"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends kamailio rtpengine-daemon
fi

# ---- 2. release build ------------------------------------------------------
if [ -z "${BIN:-}" ]; then
    log "building release swbd, swrtp, swbench"
    (cd "$ROOT" && cargo build --release -p swbd -p swrtp -p swbench)
    BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
fi
SWBENCH="$BIN/swbench"

# ---- process control (PIDs we started, never by name) -----------------------
start_bg() { # NAME CMD...
    local name=$1; shift
    setsid "$@" >"$LOGDIR/$name.log" 2>&1 </dev/null &
    echo $! >"$PIDDIR/$name.pid"
    log "started $name pid $!"
}
pid_of() { cat "$PIDDIR/$1.pid"; }
stop_one() { # NAME: TERM, wait, then KILL the recorded PID and its children
    local f="$PIDDIR/$1.pid" pid kids i
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
        kids=$(ps -o pid= --ppid "$pid" 2>/dev/null || true)
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            kill -KILL "$pid" 2>/dev/null || true
            for i in $kids; do kill -KILL "$i" 2>/dev/null || true; done
        fi
        log "stopped $1 ($pid)"
    fi
    rm -f "$f"
}
stop_all() {
    local d
    [ -s "$PIDDIR/kamailio.pid" ] && declare -F check_peer_logs >/dev/null && check_peer_logs
    for d in swbd swrtp kamailio rtpengine; do stop_one "$d"; done
}
trap stop_all EXIT INT TERM
wait_udp() { # PORT
    local i
    for i in $(seq 1 100); do ss -Hlnu "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    log "nothing listens on udp $1"; return 1
}

# ---- configs ------------------------------------------------------------
# Users 1000..3999, password "pwN" (the Kamailio htable holds the same).
USERS="$RUNDIR/users.yaml"
python3 -c '
print("users:")
for u in range(1000, 4000):
    print(f"  - {{ username: \"{u}\", password: \"pw{u}\" }}")' >"$USERS"
SWBD_SIP=127.0.0.1:5080
# The media token (swrtp and swbd share it); builds from before the token
# existed (a baseline in scripts/bench-compare.sh) take neither the flag
# nor the key.
TOKEN_ARGS=()
TOKEN_LINE=""
if "$BIN/swrtp" --help 2>/dev/null | grep -q -- --media-token-file; then
    TOKEN_ARGS=(--media-token-file "$RUNDIR/media.token")
    TOKEN_LINE="  token_file: \"$RUNDIR/media.token\""
fi
swbd_config() { # AUTH(true|false) -> path
    local cfg="$RUNDIR/swbd-auth-$1.yaml"
    cat >"$cfg" <<EOF
auth: { enabled: $1, realm: switchboard, users_file: $USERS, algorithms: [md5], max_failures: 1000000 }
sip:
  listen: ["udp:$SWBD_SIP"]
  domains: ["127.0.0.1"]
  udp_buffer_bytes: 8388608
admin: { socket: "$RUNDIR/swbd.sock" }
media:
$TOKEN_LINE
  health_interval_ms: 1000
  nodes:
    - { name: rtp-a, address: "tcp://127.0.0.1:9090" }
EOF
    echo "$cfg"
}
# RTP phase: the media daemon under test (swrtp or rtpengine) runs pinned to
# MEDIA_CPU and the generator to GEN_CPU with taskset, so the generator's
# delay measurement is not polluted by competing with the relay for a core.
# The signalling daemons are not pinned (they idle while RTP flows). Pinned to
# one core, swrtp's tokio runtime starts one worker thread (it sizes itself to
# the CPUs it may use); rtpengine keeps its configured 2 threads on that core.
# Other phases run unpinned, as before. PIN=0 turns this off.
PIN=${PIN:-1}
MEDIA_PIN=()
GEN_PIN=()
if [ "$PIN" = 1 ] && command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    MEDIA_PIN=(taskset -c "${MEDIA_CPU:-0}")
    GEN_PIN=(taskset -c "${GEN_CPU:-1}")
fi
start_switchboard() { # AUTH [pin]: with "pin", swrtp runs under MEDIA_PIN
    local pin=()
    [ "${2:-}" = pin ] && pin=("${MEDIA_PIN[@]}")
    echo "rtp_timeout_secs: 0" >"$RUNDIR/swrtp.yaml"
    RUST_LOG=warn start_bg swrtp "${pin[@]}" "$BIN/swrtp" --config "$RUNDIR/swrtp.yaml" \
        --listen tcp://127.0.0.1:9090 "${TOKEN_ARGS[@]}" \
        --rtp-ports 10000-30000 \
        --admin "unix://$RUNDIR/swrtp.sock" --node-id rtp-a
    sleep 0.5
    RUST_LOG=warn start_bg swbd "$BIN/swbd" --config "$(swbd_config "$1")"
    wait_udp 5080
    sleep 2 # media node health check
}
start_kamailio() { # with_rtpengine(0|1) [pin]: with "pin", rtpengine runs under MEDIA_PIN
    local defs=(-A WITH_AUTH) pin=()
    [ "${2:-}" = pin ] && pin=("${MEDIA_PIN[@]}")
    if [ "$1" = 1 ]; then
        start_bg rtpengine "${pin[@]}" rtpengine --config-file="$PEERS/rtpengine/rtpengine.conf" --config-section=harness
        wait_udp 2223
        defs+=(-A WITH_RTPENGINE)
    fi
    # Sized as a production install (issue #17): 1 GiB of shared memory
    # (256 MB ran out of transaction memory at ~1,800 calls/s and answered
    # 500), tlsf, and UDP workers matched to the cores.
    KAM_CMD=(kamailio -f "$PEERS/kamailio/kamailio.cfg" -DD -E -m "$KAM_SHM_MB" -M "$KAM_PKG_MB"
        -x tlsf -X tlsf -A "KAM_CHILDREN=$KAM_CHILDREN" "${defs[@]}")
    echo "${KAM_CMD[*]}" >"$OUT/peer-command.txt"
    start_bg kamailio "${KAM_CMD[@]}"
    wait_udp 5060
    sleep 1
}
KAM_SHM_MB=${KAM_SHM_MB:-1024}
KAM_PKG_MB=${KAM_PKG_MB:-16}
KAM_CHILDREN=${KAM_CHILDREN:-$(( $(nproc) * 2 ))}
# A run in which the peer logged a resource error measured its
# configuration, not the peer: it is invalid, and the script fails.
PEER_ERRORS='could not allocate|out of memory|no more (shm|pkg)|(shm|pkg)_malloc|build_cell\(\)|Too many open files|no free ports|ran out of ports'
check_peer_logs() {
    local f bad=0
    for f in "$LOGDIR/kamailio.log" "$LOGDIR/rtpengine.log"; do
        [ -s "$f" ] || continue
        if grep -Eiq "$PEER_ERRORS" "$f"; then
            log "INVALID RUN: $(basename "$f") logged a resource error:"
            grep -Ei "$PEER_ERRORS" "$f" | head -5 >&2
            bad=1
        fi
    done
    [ "$bad" = 0 ] || { for f in swbd swrtp kamailio rtpengine; do stop_one "$f"; done; exit 3; }
}
sw_watch() { echo "--watch swbd=$(pid_of swbd) --watch swrtp=$(pid_of swrtp)"; }
kam_watch() {
    local w="--watch kamailio=$(pid_of kamailio)"
    [ -s "$PIDDIR/rtpengine.pid" ] && w="$w --watch rtpengine=$(pid_of rtpengine)"
    echo "$w"
}

if [ "$QUICK" = 1 ]; then
    REG_SECS=4; REG_LONG_SECS=0; RAMP=100:200:900:3; RTP_CALLS="100"; RTP_RATE=50; LAT_SECS=4
else
    REG_SECS=10; REG_LONG_SECS=${REG_LONG_SECS:-30}; RAMP=${RAMP:-100:100:8000:10}; RTP_CALLS="1000 500"; RTP_RATE=100; LAT_SECS=20
fi
COMMON=(--json --max-seconds 600)

# ---- 3. REGISTER/s with digest auth ---------------------------------------
# Closed loop: 200 registrations in flight, as fast as the server answers.
reg_run() { # SERVER OUT WATCH...
    local server=$1 out=$2; shift 2
    "$SWBENCH" register --server "$server" --users 1000-3999 --rate 0 --max-concurrent 200 \
        --duration "$REG_SECS" "${COMMON[@]}" "$@" >"$out"
}
perf_ok() { [ "$PROFILE" = 1 ] && perf record -e cpu-clock -o "$RUNDIR/perf-check.data" true >/dev/null 2>&1; }
perf_top() { # DATA: flat profile, top 40 symbols
    perf report -i "$1" --no-children --sort dso,symbol --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | cut -c1-160 | sed 's/ *$//' | head -40 || true
}
# SKIP=reg,cps reuses the JSON of an earlier run for those phases.
SKIP=${SKIP:-}
skip() { [[ ",$SKIP," == *",$1,"* ]]; }
if ! skip reg; then
log "1. REGISTER with auth: swbd"
start_switchboard true
# shellcheck disable=SC2046
reg_run $SWBD_SIP "$OUT/register-swbd.json" $(sw_watch)
if perf_ok; then
    log "profiling swbd under REGISTER load"
    perf record -e cpu-clock -F 999 -o "$OUT/perf-swbd-register.data" -p "$(pid_of swbd)" -- sleep 8 >/dev/null 2>&1 &
    P1=$!
    "$SWBENCH" register --server $SWBD_SIP --users 1000-3999 --rate 0 --max-concurrent 200 \
        --duration 8 "${COMMON[@]}" >"$OUT/profile-register-load.json"
    wait $P1 || true
    perf_top "$OUT/perf-swbd-register.data" >"$OUT/perf-swbd-register.txt"
fi
stop_all
if ! skip kam; then
log "1. REGISTER with auth: kamailio"
start_kamailio 0
# shellcheck disable=SC2046
reg_run 127.0.0.1:5060 "$OUT/register-kamailio.json" $(kam_watch)
stop_all
fi
if [ "$REG_LONG_SECS" -gt 0 ]; then
    # The same for longer: does the rate hold once 100k+ registrations passed?
    REG_SECS=$REG_LONG_SECS
    log "1b. REGISTER with auth, ${REG_SECS}s: swbd"
    start_switchboard true
    # shellcheck disable=SC2046
    reg_run $SWBD_SIP "$OUT/register-long-swbd.json" $(sw_watch)
    stop_all
    if ! skip kam; then
    log "1b. REGISTER with auth, ${REG_SECS}s: kamailio"
    start_kamailio 0
    # shellcheck disable=SC2046
    reg_run 127.0.0.1:5060 "$OUT/register-long-kamailio.json" $(kam_watch)
    stop_all
    fi
fi

fi # reg

# ---- 4. sustained calls/s without RTP (stepped) ----------------------------
# swbd runs with auth off: the Kamailio config does not challenge INVITEs.
ramp_run() { # SERVER OUT WATCH...
    local server=$1 out=$2; shift 2
    "$SWBENCH" calls --server "$server" --callees 1000-1999 --callers 2000-2999 \
        --ramp "$RAMP" --hold 1 "${COMMON[@]}" "$@" >"$out"
}
if ! skip cps; then
log "2. calls/s: swbd + swrtp"
start_switchboard false
# shellcheck disable=SC2046
ramp_run $SWBD_SIP "$OUT/cps-swbd.json" $(sw_watch)
stop_all
if ! skip kam; then
log "2. calls/s: kamailio + rtpengine"
start_kamailio 1
# shellcheck disable=SC2046
ramp_run 127.0.0.1:5060 "$OUT/cps-kamailio.json" $(kam_watch)
stop_all
fi
fi # cps
if skip rtp && skip lat; then
    log "done (rtp and lat skipped); results in $OUT"
    exit 0
fi

sustained() { python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["sustained_rate"] or 0))' "$1"; }
SW_CPS=$(sustained "$OUT/cps-swbd.json")
KAM_CPS=$(sustained "$OUT/cps-kamailio.json")
log "sustained: swbd $SW_CPS/s, kamailio+rtpengine $KAM_CPS/s"

# ---- 5. 1,000 (and 500) calls with RTP both ways: CPU/packet, loss, delay, memory
# Calls ramp up at RTP_RATE/s; each is held long enough for a ~12 s window
# with all of them up.
rtp_run() { # N SERVER OUT WATCH... (the generator runs under GEN_PIN)
    local n=$1 server=$2 out=$3; shift 3
    "${GEN_PIN[@]}" "$SWBENCH" calls --server "$server" --callees 1000-1999 --callers 2000-2999 --rtp \
        --rate "$RTP_RATE" --total "$n" --max-concurrent "$n" --hold $(( n / RTP_RATE + 14 )) \
        "${COMMON[@]}" "$@" >"$out"
}
[ ${#MEDIA_PIN[@]} -gt 0 ] && log "RTP phase pinned: media daemon ${MEDIA_PIN[*]}, generator ${GEN_PIN[*]}"
for n in $RTP_CALLS; do
    log "3+4. $n calls with RTP: swbd + swrtp"
    start_switchboard false pin
    # --relay-stats: swrtp's own added latency, next to the generator's figure.
    # shellcheck disable=SC2046
    rtp_run "$n" $SWBD_SIP "$OUT/rtp-$n-swbd.json" $(sw_watch) \
        --relay-stats "unix://$RUNDIR/swrtp.sock"
    stop_all
    log "3+4. $n calls with RTP: kamailio + rtpengine"
    start_kamailio 1 pin
    # shellcheck disable=SC2046
    rtp_run "$n" 127.0.0.1:5060 "$OUT/rtp-$n-kamailio.json" $(kam_watch)
    stop_all
done

# ---- 6. setup latency at half the sustained rate ---------------------------
lat_run() { # SERVER RATE OUT
    "$SWBENCH" calls --server "$1" --callees 1000-1999 --callers 2000-2999 \
        --rate "$2" --duration "$LAT_SECS" --hold 1 "${COMMON[@]}" >"$3"
}
log "5. setup latency at half rate"
start_switchboard false
lat_run $SWBD_SIP $(( SW_CPS > 1 ? SW_CPS / 2 : 1 )) "$OUT/latency-swbd.json"
# Hardware counters may be missing in a VM (`perf stat -e instructions true`
# says <not supported>); cpu-clock sampling (hrtimer) works there too.
if perf_ok; then
    log "profiling swbd and swrtp (perf record -e cpu-clock, 15 s at half rate with RTP)"
    perf record -e cpu-clock -F 999 -o "$OUT/perf-swbd.data" -p "$(pid_of swbd)" -- sleep 15 >/dev/null 2>&1 &
    P1=$!
    perf record -e cpu-clock -F 999 -o "$OUT/perf-swrtp.data" -p "$(pid_of swrtp)" -- sleep 15 >/dev/null 2>&1 &
    P2=$!
    "$SWBENCH" calls --server $SWBD_SIP --callees 1000-1999 --callers 2000-2999 --rtp \
        --rate $(( SW_CPS > 1 ? SW_CPS / 2 : 1 )) --duration 12 --hold 2 "${COMMON[@]}" >"$OUT/profile-load.json"
    wait $P1 $P2 || true
    for d in swbd swrtp; do perf_top "$OUT/perf-$d.data" >"$OUT/perf-$d.txt"; done
fi
stop_all
start_kamailio 1
lat_run 127.0.0.1:5060 $(( KAM_CPS > 1 ? KAM_CPS / 2 : 1 )) "$OUT/latency-kamailio.json"
stop_all

# ---- 7. the table ----------------------------------------------------------
python3 "$ROOT/scripts/bench_summary.py" "$OUT" | tee "$OUT/summary.md"
