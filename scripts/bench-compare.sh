#!/bin/bash
# Before/after in one run: REGISTER/s with digest and sustained calls/s of
# two builds of swbd + swrtp (and their swbench), interleaved base, new,
# base, new on the same machine, through scripts/bench.sh's own phases.
#
#   scripts/bench-compare.sh BASE_BIN_DIR NEW_BIN_DIR
#   ROUNDS=2 RAMP=1000:200:3400:5 REG_SECS... (defaults shown)
#
# A baseline build of an older commit:
#   git worktree add /tmp/sw-base REV
#   (cd /tmp/sw-base && cargo build --release -p swbd -p swrtp -p swbench)
#   scripts/bench-compare.sh /tmp/sw-base/target/release target/release
# Results: target/bench-compare/{base,new}-N/ and target/bench-compare/summary.md
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE=$1
NEW=$2
ROUNDS=${ROUNDS:-2}
RAMP=${RAMP:-1000:200:3400:5}
OUTROOT=${OUTROOT:-$ROOT/target/bench-compare}
mkdir -p "$OUTROOT"
for r in $(seq 1 "$ROUNDS"); do
    for side in base new; do
        bin=$BASE
        [ "$side" = new ] && bin=$NEW
        echo "== round $r: $side ($bin), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
        BIN=$bin OUT="$OUTROOT/$side-$r" SKIP=rtp,lat,kam REG_LONG_SECS=0 RAMP=$RAMP \
            "$ROOT/scripts/bench.sh"
    done
done
python3 - "$OUTROOT" "$ROUNDS" <<'PY' | tee "$OUTROOT/summary.md"
import json, statistics, sys
root, rounds = sys.argv[1], int(sys.argv[2])
def get(side, f, key):
    out = []
    for r in range(1, rounds + 1):
        try:
            out.append(json.load(open(f"{root}/{side}-{r}/{f}"))[key] or 0)
        except (OSError, KeyError, ValueError):
            pass
    return out
print("| metric | base (each round) | new (each round) | new/base (medians) |")
print("|---|---|---|---|")
for label, f, key in [("REGISTER/s with MD5 digest", "register-swbd.json", "registrations_per_s"),
                      ("sustained calls/s, zero failures", "cps-swbd.json", "sustained_rate")]:
    b, n = get("base", f, key), get("new", f, key)
    ratio = statistics.median(n) / statistics.median(b) if b and n and statistics.median(b) else float("nan")
    print(f"| {label} | {', '.join(f'{x:.0f}' for x in b)} | {', '.join(f'{x:.0f}' for x in n)} | {ratio:.3f} |")
PY
