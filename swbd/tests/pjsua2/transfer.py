#!/usr/bin/env python3
"""Call transfer with pjsua2 (PyPI `pjsua2-python`) through swbd.

Three accounts in one pjsua2 endpoint. Alice calls Bob; then
- attended: Bob calls Carol (consultation) and transfers Alice to her
  with `Call.xferReplaces` (a REFER whose Refer-To carries Replaces);
- blind: Bob transfers Alice to Carol with `Call.xfer`.
swbd must report the transfer done to Bob (NOTIFY 200), release Bob's
calls, and leave Alice and Carol connected. Each phone plays its own tone
WAV and records what it hears; the Rust test checks the recordings.

usage: transfer.py attended|blind SWBD_PORT DIR RTP_BASE USER:PASSWORD:TONE_WAV x3
(RTP ports: 100 per phone from RTP_BASE.)
Exits 0 on success, 1 with a reason on stderr otherwise. Every wait is
bounded.
"""

import os
import sys
import time

import pjsua2 as pj

MODE = sys.argv[1]
PORT = int(sys.argv[2])
DIR = sys.argv[3]
RTP_BASE = int(sys.argv[4])
PHONES = [a.split(":", 2) for a in sys.argv[5:8]]

ep = pj.Endpoint()


def pump(secs, until=lambda: False, what=None):
    """Handle events for up to `secs`; True once `until()` holds."""
    end = time.monotonic() + secs
    while time.monotonic() < end:
        ep.libHandleEvents(20)
        if until():
            return True
    if what:
        fail(f"timed out waiting for {what}")
    return False


def fail(msg):
    sys.stderr.write(f"FAIL: {msg}\n")
    sys.stderr.flush()
    os._exit(1)


class Call(pj.Call):
    def __init__(self, phone, call_id=pj.PJSUA_INVALID_ID):
        super().__init__(phone.acc, call_id)
        self.phone = phone
        self.state = None
        self.xfer_status = []  # (status, final) of our REFER's NOTIFYs

    def onCallState(self, prm):
        self.state = self.getInfo().state

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for i, m in enumerate(info.media):
            if m.type == pj.PJMEDIA_TYPE_AUDIO and m.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                am = self.getAudioMedia(i)
                self.phone.player.startTransmit(am)
                am.startTransmit(self.phone.recorder)

    def onCallTransferStatus(self, prm):
        self.xfer_status.append((prm.statusCode, prm.finalNotify))

    def confirmed(self):
        return self.state == pj.PJSIP_INV_STATE_CONFIRMED

    def gone(self):
        return self.state == pj.PJSIP_INV_STATE_DISCONNECTED


class Account(pj.Account):
    def __init__(self, phone):
        super().__init__()
        self.phone = phone
        self.registered = False

    def onRegState(self, prm):
        self.registered = prm.code == 200

    def onIncomingCall(self, prm):
        call = Call(self.phone, prm.callId)
        self.phone.calls.append(call)
        op = pj.CallOpParam()
        op.statusCode = 200
        call.answer(op)


class Phone:
    def __init__(self, index, user, password, tone):
        self.user = user
        self.calls = []
        self.player = pj.AudioMediaPlayer()
        self.player.createPlayer(tone, 0)
        self.recorder = pj.AudioMediaRecorder()
        self.recorder.createRecorder(os.path.join(DIR, f"pjsua2-{user}.wav"))
        cfg = pj.AccountConfig()
        cfg.idUri = f"sip:{user}@127.0.0.1"
        cfg.regConfig.registrarUri = f"sip:127.0.0.1:{PORT}"
        cfg.sipConfig.authCreds.append(pj.AuthCredInfo("digest", "*", user, 0, password))
        cfg.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
        cfg.mediaConfig.transportConfig.port = RTP_BASE + 100 * index
        cfg.mediaConfig.transportConfig.portRange = 100
        self.acc = Account(self)
        self.acc.create(cfg)

    def dial(self, user):
        call = Call(self)
        self.calls.append(call)
        call.makeCall(f"sip:{user}@127.0.0.1:{PORT}", pj.CallOpParam(True))
        return call


def main():
    ep.libCreate()
    cfg = pj.EpConfig()
    cfg.uaConfig.threadCnt = 0
    cfg.uaConfig.mainThreadOnly = True
    cfg.logConfig.level = 5
    cfg.logConfig.consoleLevel = 1
    cfg.logConfig.filename = os.path.join(DIR, "pjsua2.log")
    cfg.medConfig.clockRate = 8000
    cfg.medConfig.sndClockRate = 8000
    cfg.medConfig.noVad = True
    ep.libInit(cfg)
    tcfg = pj.TransportConfig()
    tcfg.boundAddress = "127.0.0.1"
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        prio = 255 if codec.codecId.startswith(("PCMU/", "PCMA/")) else 0
        ep.codecSetPriority(codec.codecId, prio)

    alice, bob, carol = (Phone(i, *p) for i, p in enumerate(PHONES))
    pump(10, lambda: all(p.acc.registered for p in (alice, bob, carol)), "registrations")

    a_call = alice.dial("1002")
    pump(10, lambda: a_call.confirmed() and bob.calls and bob.calls[0].confirmed(), "Alice -> Bob")
    b_to_a = bob.calls[0]
    if MODE == "attended":
        b_to_c = bob.dial("1003")
        pump(10, lambda: b_to_c.confirmed() and carol.calls and carol.calls[0].confirmed(), "Bob -> Carol")
        pump(1.5)
        b_to_a.xferReplaces(b_to_c, pj.CallOpParam(True))
        bobs = [b_to_a, b_to_c]
    else:
        pump(1.5)
        b_to_a.xfer(f"sip:1003@127.0.0.1:{PORT}", pj.CallOpParam(True))
        bobs = [b_to_a]
    pump(10, lambda: any(final for _, final in b_to_a.xfer_status), "the final NOTIFY to Bob")
    status = [s for s, final in b_to_a.xfer_status if final]
    if status != [200]:
        fail(f"transfer status {b_to_a.xfer}")
    pump(10, lambda: all(c.gone() for c in bobs), "Bob's calls released")
    pump(10, lambda: carol.calls and carol.calls[0].confirmed(), "Carol connected")
    c_call = carol.calls[0]
    if not a_call.confirmed():
        fail(f"Alice's call is {a_call.state}, not connected")
    pump(3)

    a_call.hangup(pj.CallOpParam(True))
    pump(10, lambda: c_call.gone(), "Carol's BYE")
    # Close the recordings (their WAV headers are written on close).
    for p in (alice, bob, carol):
        p.recorder = None
        p.player = None
    pump(0.2)
    print(f"OK {MODE} transfer: Bob notified 200, released, Alice and Carol connected")
    sys.stdout.flush()
    os._exit(0)


main()
