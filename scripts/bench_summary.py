#!/usr/bin/env python3
"""Markdown table from the JSON reports of scripts/bench.sh (argument: the output dir)."""
import json
import os
import sys

d = sys.argv[1]


def load(name):
    p = os.path.join(d, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def num(v, fmt="{:.0f}"):
    return "n/a" if v is None else fmt.format(v)


def ratio(a, b, higher_is_better=True):
    if a is None or b is None or a == 0 or b == 0:
        return "n/a"
    return "{:.2f}x".format(a / b if higher_is_better else b / a)


def proc(report, name):
    for p in ((report or {}).get("plateau") or {}).get("processes", []):
        if p["name"] == name:
            return p
    return None


rows = []
rs, rk = load("register-swbd.json"), load("register-kamailio.json")
a = rs and rs["registrations_per_s"]
b = rk and rk["registrations_per_s"]
rows.append(("REGISTER/s with MD5 digest (401 round included; 2 transactions each)",
             num(a), num(b), ratio(a, b), ">= 1.0x"))
def reg_cpu(r, name):
    for p in (r or {}).get("processes", []):
        if p["name"] == name and r["succeeded"]:
            return p["cpu_s"] * 1e6 / r["succeeded"]
    return None


a, b = reg_cpu(rs, "swbd"), reg_cpu(rk, "kamailio")
rows.append(("  daemon CPU us per registration", num(a, "{:.1f}"), num(b, "{:.1f}"), ratio(a, b, False), ""))
if rs and rk:
    rows.append(("  REGISTER failures / retransmissions",
                 "{} / {}".format(rs["failed"], rs["retransmissions"]),
                 "{} / {}".format(rk["failed"], rk["retransmissions"]), "", ""))

rs, rk = load("register-long-swbd.json"), load("register-long-kamailio.json")
if rs or rk:
    a = rs and rs["registrations_per_s"]
    b = rk and rk["registrations_per_s"]
    rows.append(("REGISTER/s with auth over {:.0f} s (same, longer)".format((rs or rk)["elapsed_s"]),
                 "{} ({} ok, {} retrans.)".format(num(a), rs and rs["succeeded"], rs and rs["retransmissions"]),
                 "{} ({} ok, {} retrans.)".format(num(b), rk and rk["succeeded"], rk and rk["retransmissions"]),
                 ratio(a, b), ""))

cs, ck = load("cps-swbd.json"), load("cps-kamailio.json")
a = cs and cs["sustained_rate"]
b = ck and ck["sustained_rate"]
rows.append(("Sustained calls/s, zero failures, no RTP (100-cps steps of 10 s, hold 1 s)",
             num(a), num(b), ratio(a, b), ">= 2x"))
def call_cpu(r):
    if not r:
        return None
    calls = sum(p["succeeded"] for p in r["phases"])
    cpu = sum(p["cpu_s"] for p in r.get("processes", []))
    return cpu * 1e6 / calls if calls else None


a, b = call_cpu(cs), call_cpu(ck)
rows.append(("  CPU us per call, both daemons, whole ramp (swbd+swrtp vs kamailio+rtpengine)",
             num(a, "{:.0f}"), num(b, "{:.0f}"), ratio(a, b, False), ""))
for label, r in (("swbd", cs), ("kamailio", ck)):
    if r and r["phases"]:
        last = r["phases"][-1]
        if last["failed"] or last["unfinished"]:
            rows.append(("  first failing step ({})".format(label),
                         "{:.0f}/s: {}".format(last["offered_rate"], last["failures"]) if label == "swbd" else "",
                         "{:.0f}/s: {}".format(last["offered_rate"], last["failures"]) if label != "swbd" else "",
                         "", ""))

import glob
import re

ns = sorted({int(re.search(r"rtp-(\d+)-", f).group(1)) for f in glob.glob(os.path.join(d, "rtp-*-*.json"))},
            reverse=True)
for n in ns:
    ps, pk = load("rtp-{}-swbd.json".format(n)), load("rtp-{}-kamailio.json".format(n))
    if not (ps or pk):
        continue
    pl_s = (ps or {}).get("plateau") or {}
    pl_k = (pk or {}).get("plateau") or {}
    rows.append(("**{} calls with RTP both ways** (calls up / relayed packets/s received in the window)".format(n),
                 "{} / {}".format(pl_s.get("calls_up"), num(pl_s.get("rtp_pps"))),
                 "{} / {}".format(pl_k.get("calls_up"), num(pl_k.get("rtp_pps"))), "", "100k pps at 1,000"))
    a = (proc(ps, "swrtp") or {}).get("cpu_us_per_packet")
    b = (proc(pk, "rtpengine") or {}).get("cpu_us_per_packet")
    rows.append(("  CPU us per relayed packet (swrtp vs rtpengine userspace)",
                 num(a, "{:.2f}"), num(b, "{:.2f}"), ratio(a, b, False), "<= rtpengine"))
    a = (proc(ps, "swbd") or {}).get("cpu_s")
    b = (proc(pk, "kamailio") or {}).get("cpu_s")
    rows.append(("  signalling daemon CPU seconds in the same window (swbd vs kamailio)",
                 num(a, "{:.2f}"), num(b, "{:.2f}"), "", ""))
    la = ps and ps["rtp_report"]["loss_ratio"]
    lb = pk and pk["rtp_report"]["loss_ratio"]
    rows.append(("  RTP loss, whole run (of which dropped at the generator's sockets)",
                 "{} ({})".format(num(la and la * 100, "{:.3f}%"), ps and ps["rtp_report"].get("dropped_at_generator")),
                 "{} ({})".format(num(lb and lb * 100, "{:.3f}%"), pk and pk["rtp_report"].get("dropped_at_generator")),
                 "", "< 0.1%"))
    for q in ("p50_ms", "p99_ms"):
        da = ps and ps["rtp_report"]["one_way_delay"][q]
        db = pk and pk["rtp_report"]["one_way_delay"][q]
        rows.append(("  RTP one-way delay {} through the relay, ms (generator included)".format(q[:3]),
                     num(da, "{:.3f}"), num(db, "{:.3f}"), ratio(da, db, False), "p99 < 1 ms"))
    # swrtp's own figure (receive returned -> send completed, inside swrtp);
    # rtpengine has none, so only the generator-measured rows compare.
    rl = (ps or {}).get("relay_latency") or {}
    for scope, label in (("window", "window with all calls up"), ("whole_run", "whole run")):
        s = rl.get(scope)
        if s:
            rows.append(("  swrtp added latency p50 / p99 / max, ms, {} (inside swrtp, {} packets)".format(label, s.get("packets")),
                         "{} / {} / {}".format(num(s.get("p50_ms"), "{:.4f}"), num(s.get("p99_ms"), "{:.4f}"), num(s.get("max_ms"), "{:.3f}")),
                         "n/a (no such figure)", "", "p99 < 1 ms"))
    for e in rl.get("errors") or []:
        rows.append(("  swrtp relay stats error", e, "", "", ""))
    for sw, peer, target in (("swbd", "kamailio", "< 32 KiB"), ("swrtp", "rtpengine", "< 16 KiB")):
        a, b = proc(ps, sw), proc(pk, peer)
        rows.append(("  memory per call, KiB RSS (PSS): {} vs {}".format(sw, peer),
                     a and "{:.1f} ({:.1f})".format(a["rss_kib_per_call"], a["pss_kib_per_call"]) or "n/a",
                     b and "{:.1f} ({:.1f})".format(b["rss_kib_per_call"], b["pss_kib_per_call"]) or "n/a",
                     ratio(a and a["pss_kib_per_call"], b and b["pss_kib_per_call"], False), target))

ls, lk = load("latency-swbd.json"), load("latency-kamailio.json")
for q in ("p50_ms", "p99_ms"):
    a = ls and ls["phases"][0]["setup_latency"][q]
    b = lk and lk["phases"][0]["setup_latency"][q]
    rows.append(("Setup latency {} at half the sustained rate (INVITE -> 200), ms".format(q[:3]),
                 num(a, "{:.2f}"), num(b, "{:.2f}"), ratio(a, b, False), ""))
if ls and lk:
    rows.append(("  rate used / failures",
                 "{:.0f}/s / {}".format(ls["phases"][0]["offered_rate"], ls["phases"][0]["failed"]),
                 "{:.0f}/s / {}".format(lk["phases"][0]["offered_rate"], lk["phases"][0]["failed"]), "", ""))

print("| metric | swbd + swrtp | Kamailio (+ rtpengine) | ratio (>1 = Switchboard better) | target |")
print("|---|---|---|---|---|")
for r in rows:
    print("| " + " | ".join(str(x) for x in r) + " |")

# The peer's exact command line and this machine's load when the summary was
# written (issue #17: every number with the peer's sizing and the load).
peer_cmd = os.path.join(d, "peer-command.txt")
if os.path.exists(peer_cmd):
    with open(peer_cmd) as f:
        print("\nPeer: `" + f.read().strip() + "`")
try:
    with open("/proc/loadavg") as f:
        print("Load average at the end of the run: " + " ".join(f.read().split()[:3]))
except OSError:
    pass
