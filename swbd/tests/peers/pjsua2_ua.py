#!/usr/bin/env python3
"""A pjsua2 (PJSIP 2.x, PyPI `pjsua2-python`) user agent for swbd's interop
tests: it registers, places or answers one call, and prints what happens
as lines on stdout for the Rust test to read. Audio runs on the null
device (no sound card).

Output lines (one event each, fields separated by ' | '):
  ready | <local SIP port>
  reg | <status code>
  incoming | <Call-ID>
  state | <CALLING|EARLY|CONNECTING|CONFIRMED|DISCONNECTED> | <last status>
  rx | <start line> | <header>=<value> ...   every SIP message of the call
  tx | <start line> | <header>=<value> ...   received / sent by pjsua
  error | <text>
Headers shown: CSeq, Require, Supported, RSeq, RAck, Session-Expires,
Min-SE, Content-Type.

Commands on stdin (one per line): `hangup`, `quit`.

Options: --swbd HOST:PORT, --user, --password, --call DEST (else answer),
--early 180|183|180,183|none (provisionals sent before answering),
--answer-after-ms N, --prack off|optional|mandatory,
--timer inactive|optional|required|always, --session-expires S,
--min-se S, --log-level N (pjsip's own log on stderr).
"""

import argparse
import select
import sys
import time

import pjsua2 as pj

SHOWN = {
    "cseq": "CSeq",
    "require": "Require",
    "supported": "Supported",
    "k": "Supported",
    "rseq": "RSeq",
    "rack": "RAck",
    "session-expires": "Session-Expires",
    "x": "Session-Expires",
    "min-se": "Min-SE",
    "content-type": "Content-Type",
    "c": "Content-Type",
}


def out(*fields):
    print(" | ".join(str(f).replace("\n", " ") for f in fields), flush=True)


def summary(whole):
    """Start line and the interesting headers of a SIP message."""
    text = whole.replace("\r\n", "\n")
    head = text.split("\n\n", 1)[0]
    lines = head.split("\n")
    fields = [lines[0].strip()]
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = SHOWN.get(name.strip().lower())
        if key:
            fields.append(f"{key}={value.strip()}")
    return fields


class Call(pj.Call):
    def __init__(self, ua, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.ua = ua

    def onCallState(self, prm):
        info = self.getInfo()
        out("state", info.stateText, info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ua.ended = True

    def onCallTsxState(self, prm):
        ev = prm.e.body.tsxState
        try:
            if ev.type == pj.PJSIP_EVENT_RX_MSG:
                out("rx", *summary(ev.src.rdata.wholeMsg))
            elif ev.type == pj.PJSIP_EVENT_TX_MSG:
                out("tx", *summary(ev.src.tdata.wholeMsg))
        except Exception as e:  # a message pjsua2 cannot show us
            out("error", f"tsx event: {e}")

    def onCallMediaState(self, prm):
        out("media", "active")


class Account(pj.Account):
    def __init__(self, ua):
        pj.Account.__init__(self)
        self.ua = ua

    def onRegState(self, prm):
        out("reg", prm.code)

    def onIncomingCall(self, prm):
        out("rx", *summary(prm.rdata.wholeMsg))
        call = Call(self.ua, self, prm.callId)
        self.ua.calls.append(call)
        out("incoming", call.getInfo().callIdString)
        self.ua.incoming(call)


class Ua:
    def __init__(self, args):
        self.args = args
        self.calls = []
        self.ended = False
        self.pending = []  # (at, action)

    def incoming(self, call):
        early = [] if self.args.early == "none" else self.args.early.split(",")
        for code in early:
            self.answer(call, int(code))
        self.later(self.args.answer_after_ms, lambda: self.answer(call, 200))

    def answer(self, call, code):
        prm = pj.CallOpParam()
        prm.statusCode = code
        try:
            call.answer(prm)
        except pj.Error as e:
            out("error", f"answer {code}: {e.info()}")

    def later(self, ms, action):
        self.pending.append((time.monotonic() + ms / 1000.0, action))

    def run_due(self):
        now = time.monotonic()
        due = [a for (t, a) in self.pending if t <= now]
        self.pending = [(t, a) for (t, a) in self.pending if t > now]
        for action in due:
            action()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--swbd", required=True)
    p.add_argument("--user", required=True)
    p.add_argument("--password", default="")
    p.add_argument("--call")
    p.add_argument("--early", default="180")
    p.add_argument("--answer-after-ms", type=int, default=500)
    p.add_argument("--prack", default="off", choices=["off", "optional", "mandatory"])
    p.add_argument(
        "--timer", default="optional", choices=["inactive", "optional", "required", "always"]
    )
    p.add_argument("--session-expires", type=int, default=1800)
    p.add_argument("--min-se", type=int, default=90)
    p.add_argument("--log-level", type=int, default=1)
    args = p.parse_args()

    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.uaConfig.userAgent = "pjsua2-swbd-test"
    cfg.logConfig.level = args.log_level
    cfg.logConfig.consoleLevel = args.log_level
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = "127.0.0.1"
    tid = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    port = ep.transportGetInfo(tid).localName.split(":")[-1]

    ua = Ua(args)
    acfg = pj.AccountConfig()
    acfg.idUri = f"sip:{args.user}@{args.swbd}"
    acfg.regConfig.registrarUri = f"sip:{args.swbd}"
    acfg.regConfig.timeoutSec = 300
    if args.password:
        acfg.sipConfig.authCreds.append(
            pj.AuthCredInfo("digest", "*", args.user, 0, args.password)
        )
    acfg.callConfig.prackUse = {
        "off": pj.PJSUA_100REL_NOT_USED,
        "optional": pj.PJSUA_100REL_OPTIONAL,
        "mandatory": pj.PJSUA_100REL_MANDATORY,
    }[args.prack]
    acfg.callConfig.timerUse = {
        "inactive": pj.PJSUA_SIP_TIMER_INACTIVE,
        "optional": pj.PJSUA_SIP_TIMER_OPTIONAL,
        "required": pj.PJSUA_SIP_TIMER_REQUIRED,
        "always": pj.PJSUA_SIP_TIMER_ALWAYS,
    }[args.timer]
    acfg.callConfig.timerSessExpiresSec = args.session_expires
    acfg.callConfig.timerMinSESec = args.min_se
    acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    acc = Account(ua)
    acc.create(acfg)
    out("ready", port)

    placed = False
    stdin_open = True
    while True:
        ep.libHandleEvents(20)
        ua.run_due()
        if args.call and not placed and acc.getInfo().regIsActive:
            placed = True
            call = Call(ua, acc)
            ua.calls.append(call)
            prm = pj.CallOpParam(True)
            try:
                call.makeCall(f"sip:{args.call}@{args.swbd}", prm)
            except pj.Error as e:
                out("error", f"makeCall: {e.info()}")
        if stdin_open and select.select([sys.stdin], [], [], 0)[0]:
            line = sys.stdin.readline()
            if not line:
                stdin_open = False
                break
            cmd = line.strip()
            if cmd == "hangup":
                for c in ua.calls:
                    try:
                        c.hangup(pj.CallOpParam())
                    except pj.Error:
                        pass
            elif cmd == "quit":
                break
    for c in ua.calls:
        try:
            c.hangup(pj.CallOpParam())
        except pj.Error:
            pass
    ep.hangupAllCalls()
    for _ in range(25):
        ep.libHandleEvents(20)
    ua.calls = []
    acc.shutdown()
    ep.libDestroy()


if __name__ == "__main__":
    main()
