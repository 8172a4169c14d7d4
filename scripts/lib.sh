# Process helpers shared by the benchmark scripts (sourced, not run).
# The caller sets RUN (a private temporary directory) and PIDS=() before
# using start_bg; nothing here kills anything but the PIDs it recorded.

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

start_bg() { # NAME CMD...: run in its own session, log to $RUN/NAME.log, PID recorded
    local name=$1; shift
    setsid "$@" >"$RUN/$name.log" 2>&1 </dev/null &
    PIDS+=($!)
    echo $! >"$RUN/$name.pid"
}

stop_pid() { # PID: TERM, wait up to 5 s, then KILL
    local pid=$1 i
    kill -TERM "$pid" 2>/dev/null || return 0
    for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
}

wait_udp() { # PORT: until something listens on it (10 s)
    local i
    for i in $(seq 1 100); do ss -Hlnu "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    log "nothing on udp $1"; return 1
}

wait_tcp() { # PORT: until something listens on it (10 s)
    local i
    for i in $(seq 1 100); do ss -Hlnt "sport = :$1" | grep -q . && return 0; sleep 0.1; done
    log "nothing on tcp $1"; return 1
}
