"""A seeded directory of ~1,000 hostile and good music files, for the reliability tests.

MIDI bytes are written by hand (not with pretty_midi or mido) so that the files can break the rules on purpose:
lying headers, tempo 0, 2,000 tracks, data bytes above 127, chunks longer than the file.
"""

from __future__ import annotations

import os
import pathlib
import random
import shutil
import struct


def vlq(n: int) -> bytes:
    """A MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def track(events: list[tuple[int, bytes]], end: bool = True) -> bytes:
    """An MTrk chunk from (delta ticks, raw event bytes); ends with End of Track unless `end` is False."""
    body = b"".join(vlq(d) + e for d, e in events) + (vlq(0) + b"\xff\x2f\x00" if end else b"")
    return b"MTrk" + struct.pack(">I", len(body)) + body


def midi(tracks: list[bytes], fmt: int = 1, division: int = 480, ntracks: int | None = None) -> bytes:
    header = struct.pack(">HHH", fmt, len(tracks) if ntracks is None else ntracks, division)
    return b"MThd" + struct.pack(">I", 6) + header + b"".join(tracks)


def tempo(us_per_quarter: int) -> bytes:
    return b"\xff\x51\x03" + us_per_quarter.to_bytes(3, "big")


def notes(pitches: list[int], step: int = 120, channel: int = 0, length: int | None = None) -> list:
    """One note after another, each `length` ticks long (default: the full step)."""
    length = step if length is None else length
    out = []
    for p in pitches:
        out += [(0, bytes([0x90 | channel, p, 100])), (length, bytes([0x80 | channel, p, 0]))]
        if step > length:
            out.append((step - length, b"\xff\x01\x00"))  # an empty text event keeps the spacing
    return out


def melody_pitches(rng: random.Random, n: int = 96) -> list[int]:
    return [rng.choice([60, 62, 64, 65, 67, 69, 71, 72]) for _ in range(n)]


def good_midi(rng: random.Random) -> bytes:
    """A valid 4/4 monophonic tune of 24 bars in 8ths (long enough for Magenta's 7-bar minimum)."""
    meta = [(0, tempo(500000)), (0, b"\xff\x58\x04\x04\x02\x18\x08")]
    return midi([track(meta), track(notes(melody_pitches(rng), step=240))])


def build(root: pathlib.Path, real_midi: list[pathlib.Path], seed: int = 0) -> dict[str, set[str]]:
    """Writes the suite under `root`; returns {"good": relative paths that must convert, "bad": that must not,
    "either": files a parser may legitimately read or refuse (truncated MIDI, odd headers)}."""
    rng = random.Random(seed)
    kinds: dict[str, set[str]] = {"good": set(), "bad": set(), "either": set()}

    def put(rel: str, data: bytes, kind: str) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        kinds[kind].add(rel)

    for i, src in enumerate(real_midi[:240]):                     # real tunes, spread over nested folders
        put(f"real/{i % 6}/{src.name}", src.read_bytes(), "good")
    for i in range(60):
        put(f"written/tune_{i:02d}.mid", good_midi(rng), "good")
    deep = "/".join(f"level{d}" for d in range(40))
    put(f"{deep}/deep_tune.mid", good_midi(rng), "good")
    for name in ("Ünïcödé tune 曲 🎵.mid", "space and 'quotes'.midi", "UPPER.MID", "ça-va.mid", "-dash.mid"):
        put(f"names/{name}", good_midi(rng), "good")

    for i in range(150):
        put(f"random/bytes_{i:03d}.mid", rng.randbytes(rng.randint(1, 5000)), "bad")
    for i in range(100):
        put(f"random/header_{i:03d}.mid", b"MThd\x00\x00\x00\x06" + rng.randbytes(rng.randint(0, 3000)), "either")
    for i, src in enumerate(real_midi[:150]):
        data = src.read_bytes()
        put(f"truncated/{i:03d}_{src.name}", data[:rng.randint(1, max(2, len(data) - 1))], "either")
    for i in range(10):
        put(f"truncated/header_only_{i}.mid", midi([])[: 8 + i], "bad")
    for ext in (".mid", ".midi", ".abc", ".xml", ".mxl", ".musicxml"):
        for i in range(5):
            put(f"empty/empty_{i}{ext}", b"", "bad")
    for i in range(20):
        put(f"text/random_{i:02d}.abc", bytes(rng.choice(b"abcdefgABCDEFG|:/ 123\n") for _ in range(400)), "either")
        put(f"text/random_{i:02d}.xml", b"<?xml version='1.0'?><score-partwise>" + rng.randbytes(200), "bad")
        put(f"text/binary_{i:02d}.mxl", rng.randbytes(500), "bad")

    tune = melody_pitches(rng)
    for i in range(20):
        put(f"tempo/zero_{i:02d}.mid", midi([track([(0, tempo(0))] + notes(tune))]), "either")
        put(f"tempo/slowest_{i:02d}.mid", midi([track([(0, tempo(0xFFFFFF))] + notes(tune))]), "either")
        put(f"tempo/bad_length_{i:02d}.mid", midi([track([(0, b"\xff\x51\x04\xff\xff\xff\xff")] + notes(tune))]),
            "either")
        put(f"tempo/thousands_of_changes_{i:02d}.mid",
            midi([track([(1, tempo(rng.randint(1, 0xFFFFFF))) for _ in range(3000)] + notes(tune))]), "either")
    for i in range(4):
        many = [track(notes([60 + (t % 24)], step=120)) for t in range(2000)]
        put(f"tracks/two_thousand_{i}.mid", midi(many), "good")
    for i in range(20):
        put(f"drums/drums_only_{i:02d}.mid", midi([track(notes(melody_pitches(rng), channel=9))]), "good")
        chords = []
        for _ in range(64):
            chord = rng.sample(range(36, 96), 10)
            chords += [(0, bytes([0x90, p, 90])) for p in chord]
            chords += [(120 if j == 0 else 0, bytes([0x80, p, 0])) for j, p in enumerate(chord)]
        put(f"polyphony/dense_{i:02d}.mid", midi([track(chords)]), "good")
        put(f"zero_length/notes_{i:02d}.mid", midi([track(notes(tune, step=120, length=0))]), "either")
        put(f"out_of_range/pitch_{i:02d}.mid", midi([track([(0, bytes([0x90, 128 + i, 100])), (120, b"\x80\x80\x00")])]),
            "either")
        put(f"out_of_range/velocity_{i:02d}.mid", midi([track([(0, bytes([0x90, 60, 200])), (120, b"\x80\x3c\x00")])]),
            "either")
        put(f"huge_time/far_note_{i:02d}.mid", midi([track([(9_000_000 + i, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")])]),
            "either")
        put(f"huge_time/past_limit_{i:02d}.mid", midi([track([(0x0FFFFFFF, b"\x90\x3c\x64"), (480, b"\x80\x3c\x00")])]),
            "either")
    lies = {
        "more_tracks_than_present": midi([track(notes(tune))], ntracks=40),
        "chunk_longer_than_file": b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x7f\xff\xff\xff\x00\x90\x3c",
        "division_zero": midi([track(notes(tune))], division=0),
        "smpte_division": midi([track(notes(tune))], division=0xE728),
        "format_two": midi([track(notes(tune)), track(notes(tune))], fmt=2),
        "format_nine": midi([track(notes(tune))], fmt=9),
        "no_end_of_track": midi([track(notes(tune), end=False)]),
        "header_length_50": b"MThd\x00\x00\x00\x32" + b"\x00" * 50 + track(notes(tune)),
        "running_status_garbage": midi([track([(0, b"\x90\x3c\x64"), (10, b"\x3e\x64"), (10, b"\xf7\x05abc")])]),
    }
    for name, data in lies.items():
        put(f"lies/{name}.mid", data, "either")

    (root / "odd").mkdir()
    (root / "odd" / "folder.mid").mkdir()                       # a directory with a music name
    os.symlink("does-not-exist.mid", root / "odd" / "broken_link.mid")
    kinds["bad"].add("odd/broken_link.mid")
    os.mkfifo(root / "odd" / "pipe.mid")                        # reading it would block forever
    kinds["bad"].add("odd/pipe.mid")
    for i in range(5):
        rel = f"odd/no_permission_{i}.mid"
        put(rel, good_midi(rng), "either")                      # unreadable, except to root
        os.chmod(root / rel, 0)
    put("odd/notes.txt", b"not music", "bad")
    shutil.copy(root / "written" / "tune_00.mid", root / "odd" / "copy_of_tune.mid")
    kinds["good"].add("odd/copy_of_tune.mid")
    return kinds
