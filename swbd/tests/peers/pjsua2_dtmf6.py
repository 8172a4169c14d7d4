#!/usr/bin/env python3
"""A pjsua2 (PJSIP 2.x, PyPI `pjsua2-python`) phone for swbd's interop tests
of DTMF and IPv6 media (swbd/tests/pjsua2_dtmf6.rs drives it).

It registers and answers, or places a call; sends DTMF as SIP INFO or RFC
2833/4733 once the call is up; reports what happens as one line per event
on stdout, `EVENT key=value ...`:

    READY transport=...            the SIP transport is up
    REG code=200                   registration answered
    INCOMING                       a call arrived (answered 200 at once)
    STATE state=CONFIRMED code=200 call state changes
    MEDIA remote=[::1]:10000       audio is active, with the far RTP address
    DTMF digit=5 method=rfc2833    a digit arrived (method: rfc2833 or info)
    SENT digits=1234 method=info   the digits were handed to pjsua
    STATS rx=123 tx=456            RTP packets received / sent (at hang-up)
    DONE                           the call ended (or --timeout), exiting

Nothing is played or recorded: the null sound device feeds silence, and
with VAD off pjsua sends a packet every 20 ms, so packet counts show that
audio flows both ways.
"""

import argparse
import sys
import time

import pjsua2 as pj


def emit(event, **kw):
    fields = " ".join(f"{k}={v}" for k, v in kw.items())
    print(f"{event} {fields}".rstrip(), flush=True)


METHODS = {
    pj.PJSUA_DTMF_METHOD_RFC2833: "rfc2833",
    pj.PJSUA_DTMF_METHOD_SIP_INFO: "info",
}


class Call(pj.Call):
    def __init__(self, acc, call_id=pj.PJSUA_INVALID_ID):
        pj.Call.__init__(self, acc, call_id)
        self.confirmed = False
        self.ended = False
        self.media = False
        self.digits = ""
        self.stats = None

    def onCallState(self, prm):
        ci = self.getInfo()
        emit("STATE", state=ci.stateText, code=ci.lastStatusCode)
        if ci.state == pj.PJSIP_INV_STATE_CONFIRMED:
            self.confirmed = True
        if ci.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.ended = True

    def onCallMediaState(self, prm):
        ci = self.getInfo()
        for i, mi in enumerate(ci.media):
            if mi.type == pj.PJMEDIA_TYPE_AUDIO and mi.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media = True
                info = self.getStreamInfo(i)
                emit("MEDIA", remote=info.remoteRtpAddress, codec=info.codecName)

    def onStreamDestroyed(self, prm):
        # Last chance to read the counters of the stream.
        try:
            st = self.getStreamStat(prm.streamIdx)
            self.stats = (st.rtcp.rxStat.pkt, st.rtcp.txStat.pkt)
        except pj.Error:
            pass

    def onDtmfDigit(self, prm):
        self.digits += prm.digit
        emit("DTMF", digit=prm.digit, method=METHODS.get(prm.method, prm.method))

    def counters(self):
        try:
            st = self.getStreamStat(0)
            return (st.rtcp.rxStat.pkt, st.rtcp.txStat.pkt)
        except pj.Error:
            return self.stats or (0, 0)


class Account(pj.Account):
    def __init__(self):
        pj.Account.__init__(self)
        self.calls = []

    def onRegState(self, prm):
        emit("REG", code=prm.code)

    def onIncomingCall(self, prm):
        call = Call(self, prm.callId)
        self.calls.append(call)
        emit("INCOMING")
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ipv6", action="store_true", help="SIP on [::1]")
    ap.add_argument("--media-ipv6", action="store_true",
                    help="RTP on [::1] too (needs a PJSIP with IPv6, see below)")
    ap.add_argument("--user", required=True)
    ap.add_argument("--server", required=True, help="swbd as host:port ([::1]:5060)")
    ap.add_argument("--register", action="store_true", help="register, then answer calls")
    ap.add_argument("--dial", help="user to call through --server")
    ap.add_argument("--dtmf", default="", help="digits to send once the call is up")
    ap.add_argument("--dtmf-method", choices=["info", "rfc2833"], default="info")
    ap.add_argument("--dtmf-after", type=float, default=1.0, help="seconds after media is up")
    ap.add_argument("--talk", type=float, default=0.0,
                    help="caller: hang up this long after the digits (0: wait for BYE)")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--probe-media-ipv6", action="store_true",
                    help="exit 0 if this PJSIP can put media on IPv6 (it aborts if not)")
    args = ap.parse_args()
    if args.probe_media_ipv6:
        args.ipv6 = args.media_ipv6 = True

    host = "::1" if args.ipv6 else "127.0.0.1"
    ep = pj.Endpoint()
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 3
    cfg.logConfig.consoleLevel = 0
    cfg.logConfig.filename = f"pjsua2-{args.user}.log"
    cfg.medConfig.noVad = True
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.port = 0
    tcfg.boundAddress = host
    kind = pj.PJSIP_TRANSPORT_UDP6 if args.ipv6 else pj.PJSIP_TRANSPORT_UDP
    tid = ep.transportCreate(kind, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    # G.711 only: what swrtp speaks.
    for c in ep.codecEnum2():
        keep = c.codecId.startswith("PCMU/") or c.codecId.startswith("PCMA/")
        ep.codecSetPriority(c.codecId, 200 if keep else 0)
    info = ep.transportGetInfo(tid)
    emit("READY", transport=info.localName)

    acfg = pj.AccountConfig()
    hosturi = f"[{host}]" if args.ipv6 else host
    acfg.idUri = f"sip:{args.user}@{hosturi}"
    acfg.sipConfig.transportId = tid
    if args.register:
        acfg.regConfig.registrarUri = f"sip:{args.server}"
        acfg.regConfig.timeoutSec = 300
    else:
        acfg.regConfig.registrarUri = ""
    acfg.natConfig.contactRewriteUse = 0
    acfg.natConfig.viaRewriteUse = 0
    acfg.natConfig.sdpNatRewriteUse = 0
    if args.media_ipv6:
        # Needs a PJSIP built with PJ_HAS_IPV6 (the PyPI wheel is not:
        # pjsua aborts on this setting there).
        acfg.mediaConfig.transportConfig.boundAddress = "::1"
        acfg.mediaConfig.ipv6Use = pj.PJSUA_IPV6_ENABLED
    else:
        acfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        acfg.mediaConfig.ipv6Use = pj.PJSUA_IPV6_DISABLED
    acc = Account()
    acc.create(acfg)
    if args.probe_media_ipv6:
        emit("MEDIA_IPV6", supported="yes")
        ep.libDestroy()
        return 0

    call = None
    if args.dial:
        call = Call(acc)
        acc.calls.append(call)
        call.makeCall(f"sip:{args.dial}@{args.server}", pj.CallOpParam(True))

    deadline = time.monotonic() + args.timeout
    sent_at = None
    media_at = None
    while time.monotonic() < deadline:
        ep.libHandleEvents(20)
        if acc.calls and (call is None or (call.ended and not call.confirmed)):
            # A callee takes the newest call; one refused before it was
            # confirmed (a 488) is not the end: the caller may try again.
            call = acc.calls[-1]
        if call is None:
            continue
        if call.ended:
            if args.register and not call.confirmed:
                continue
            break
        if call.confirmed and call.media and media_at is None:
            media_at = time.monotonic()
        if args.dtmf and sent_at is None and media_at is not None \
                and time.monotonic() - media_at >= args.dtmf_after:
            prm = pj.CallSendDtmfParam()
            prm.digits = args.dtmf
            prm.method = (pj.PJSUA_DTMF_METHOD_SIP_INFO if args.dtmf_method == "info"
                          else pj.PJSUA_DTMF_METHOD_RFC2833)
            prm.duration = 160
            call.sendDtmf(prm)
            sent_at = time.monotonic()
            emit("SENT", digits=args.dtmf, method=args.dtmf_method)
        if args.talk and media_at is not None and (sent_at or media_at) \
                and time.monotonic() - (sent_at or media_at) >= args.talk:
            rx, tx = call.counters()
            emit("STATS", rx=rx, tx=tx)
            call.hangup(pj.CallOpParam())
            args.talk = 0
            deadline = min(deadline, time.monotonic() + 5)
    if call is not None:
        rx, tx = call.counters()
        emit("STATS", rx=rx, tx=tx)
        if not call.ended:
            try:
                call.hangup(pj.CallOpParam())
            except pj.Error:
                pass
            for _ in range(50):
                ep.libHandleEvents(20)
    emit("DONE")
    acc.shutdown()
    ep.libDestroy()


if __name__ == "__main__":
    sys.exit(main())
