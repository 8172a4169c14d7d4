#!/usr/bin/env python3
"""Regenerate the test prompts (8 kHz, mono, 16-bit PCM). Synthetic, no copyright.

    python3 testdata/audio/generate.py
"""
import math
import os
import struct
import wave

RATE = 8000
HERE = os.path.dirname(os.path.abspath(__file__))


def write(name, samples):
    with wave.open(os.path.join(HERE, name), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(b"".join(struct.pack("<h", s) for s in samples))


def tone(freq, seconds, amplitude=0.5):
    n = int(RATE * seconds)
    return [int(amplitude * 32767 * math.sin(2 * math.pi * freq * i / RATE)) for i in range(n)]


# 1 kHz tone, 2 s (the classic test tone).
write("tone-1khz-2s.wav", tone(1000, 2.0))
# Beep pattern: three 200 ms 440 Hz beeps separated by 200 ms of silence (1 s).
beeps = []
for k in range(3):
    beeps += tone(440, 0.2)
    if k < 2:
        beeps += [0] * int(RATE * 0.2)
write("beep-440.wav", beeps)
# Music on hold (swbd media.music_on_hold default): a gentle four-note
# arpeggio (C5 E5 G5 E5, 250 ms each with 20 ms fades), 4 s, looped by
# the node. No energy near the 440 Hz / 1 kHz test tones.
notes = []
for k in range(16):
    freq = [523.25, 659.25, 783.99, 659.25][k % 4]
    n = tone(freq, 0.25, amplitude=0.3)
    fade = int(RATE * 0.02)
    for i in range(fade):
        n[i] = int(n[i] * i / fade)
        n[-1 - i] = int(n[-1 - i] * i / fade)
    notes += n
write("music-on-hold.wav", notes)
