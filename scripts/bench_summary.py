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
if rs and rk:
    rows.append(("  REGISTER failures / retransmissions",
                 "{} / {}".format(rs["failed"], rs["retransmissions"]),
                 "{} / {}".format(rk["failed"], rk["retransmissions"]), "", ""))

cs, ck = load("cps-swbd.json"), load("cps-kamailio.json")
a = cs and cs["sustained_rate"]
b = ck and ck["sustained_rate"]
rows.append(("Sustained calls/s, zero failures, no RTP (100-cps steps of 10 s, hold 1 s)",
             num(a), num(b), ratio(a, b), ">= 2x"))
for label, r in (("swbd", cs), ("kamailio", ck)):
    if r and r["phases"]:
        last = r["phases"][-1]
        if last["failed"] or last["unfinished"]:
            rows.append(("  first failing step ({})".format(label),
                         "{:.0f}/s: {}".format(last["offered_rate"], last["failures"]) if label == "swbd" else "",
                         "{:.0f}/s: {}".format(last["offered_rate"], last["failures"]) if label != "swbd" else "",
                         "", ""))

ps, pk = load("rtp-swbd.json"), load("rtp-kamailio.json")
if ps or pk:
    n = (ps or pk)["plateau"]["calls_up"] if (ps or pk).get("plateau") else None
    pps_s = ps and ps.get("plateau") and ps["plateau"]["rtp_pps"]
    pps_k = pk and pk.get("plateau") and pk["plateau"]["rtp_pps"]
    rows.append(("Calls up with RTP both ways / relayed packets/s received",
                 "{} / {}".format(ps and ps.get("plateau") and ps["plateau"]["calls_up"], num(pps_s)),
                 "{} / {}".format(pk and pk.get("plateau") and pk["plateau"]["calls_up"], num(pps_k)), "", ""))
    a = (proc(ps, "swrtp") or {}).get("cpu_us_per_packet")
    b = (proc(pk, "rtpengine") or {}).get("cpu_us_per_packet")
    rows.append(("CPU us per relayed packet (swrtp vs rtpengine userspace)",
                 num(a, "{:.2f}"), num(b, "{:.2f}"), ratio(a, b, False), "<= 1.0x cost"))
    a = (proc(ps, "swbd") or {}).get("cpu_us_per_packet")
    b = (proc(pk, "kamailio") or {}).get("cpu_us_per_packet")
    rows.append(("  signalling daemon CPU in the same window, us/packet (swbd vs kamailio)",
                 num(a, "{:.3f}"), num(b, "{:.3f}"), "", ""))
    la = ps and ps["rtp_report"]["loss_ratio"]
    lb = pk and pk["rtp_report"]["loss_ratio"]
    rows.append(("RTP loss", num(la and la * 100, "{:.3f}%"), num(lb and lb * 100, "{:.3f}%"), "", "< 0.1%"))
    da = ps and ps["rtp_report"]["one_way_delay"]["p99_ms"]
    db = pk and pk["rtp_report"]["one_way_delay"]["p99_ms"]
    rows.append(("RTP one-way delay p99 through the relay, ms (generator included)",
                 num(da, "{:.3f}"), num(db, "{:.3f}"), ratio(da, db, False), "< 1 ms"))
    for sw, peer, target in (("swbd", "kamailio", "< 32 KiB"), ("swrtp", "rtpengine", "< 16 KiB")):
        a, b = proc(ps, sw), proc(pk, peer)
        rows.append(("Memory per call, KiB RSS (PSS): {} vs {}".format(sw, peer),
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
