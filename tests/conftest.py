"""Shared fixtures: the real data in ../shared/data (skipped with a reason when absent) and MIDI writers."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pretty_midi
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(*parts: str) -> pathlib.Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not found: {path} (tests read ../shared/data beside the repository)")
    return path


@pytest.fixture(scope="session", autouse=True)
def subprocess_tmpdir(tmp_path_factory):
    """Every process a test starts (commands, notebook kernels) gets its temp folder inside pytest's: a process a
    test kills cannot remove TensorFlow's autograph files, and the notebooks make run folders with mkdtemp."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(tmp_path_factory.mktemp("tmp")))
        yield


@pytest.fixture(scope="session")
def nottingham_melody() -> pathlib.Path:
    return shared("nottingham", "melody")


@pytest.fixture(scope="session")
def nottingham_full() -> pathlib.Path:
    return shared("nottingham", "full")


@pytest.fixture(scope="session")
def irish_midi() -> pathlib.Path:
    return shared("irish_cre", "midi")


def write_midi(path: pathlib.Path, tracks: list[list[tuple[int, float, float]]], *, drums: tuple[int, ...] = (),
               tempo_changes: list[tuple[float, float]] | None = None, time_signatures=None) -> pathlib.Path:
    """Writes a MIDI file with pretty_midi: tracks of (pitch, start s, end s); `drums` are track indexes."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    for i, notes in enumerate(tracks):
        inst = pretty_midi.Instrument(program=0, is_drum=i in drums)
        inst.notes = [pretty_midi.Note(velocity=100, pitch=p, start=s, end=e) for p, s, e in notes]
        pm.instruments.append(inst)
    for ts in time_signatures or []:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*ts))
    pm.write(str(path))
    if tempo_changes:  # pretty_midi cannot write tempo changes; rewrite the tempo track with mido
        import mido

        mid = mido.MidiFile(str(path))
        tpq = mid.ticks_per_beat
        track = mid.tracks[0]
        msgs = [m for m in track if m.type != "set_tempo" and m.type != "end_of_track"]
        track.clear()
        last = 0
        for t, qpm in tempo_changes:
            tick = int(round(t * 2 * tpq))  # times are given at 120 qpm
            track.append(mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(qpm), time=tick - last))
            last = tick
        for m in msgs:
            track.append(m.copy(time=0))
        track.append(mido.MetaMessage("end_of_track", time=0))
        mid.save(str(path))
    return path


def scale_melody(bars: int = 8, start: float = 0.0, pitch0: int = 60, step: float = 0.25) -> list:
    """A monophonic line walking a C major scale for `bars` bars at 120 qpm (`step` seconds per note)."""
    scale = [0, 2, 4, 5, 7, 9, 11, 12]
    n = int(bars * 2.0 / step)
    return [(pitch0 + scale[i % len(scale)], start + i * step, start + (i + 1) * step) for i in range(n)]


def run_cli(*args: str, cwd=None, python: list[str] | None = None, timeout: float = 600,
            env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs one of our console scripts as a user would (a fresh process), capturing output.

    `python` replaces the interpreter command (a wrapper that measures or limits the process).
    """
    env = dict(os.environ, PYTHONWARNINGS="ignore", TF_CPP_MIN_LOG_LEVEL="2", **(env or {}))
    return subprocess.run([*(python or [sys.executable]), "-m", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


@pytest.fixture(scope="session")
def nottingham_examples(tmp_path_factory, nottingham_melody):
    """Real SequenceExamples: the Nottingham melodies through our pipeline, 10 % eval (seed 0)."""
    from attnrnn_lib import dataset, midi_io, tfrecord

    root = tmp_path_factory.mktemp("nottingham_examples")
    midi_io.convert_directory(str(nottingham_melody), str(root / "ns.tfrecord"), num_workers=2)
    dataset.create_dataset(tfrecord.read_records(str(root / "ns.tfrecord")), str(root), eval_ratio=0.1, seed=0,
                           num_workers=2)
    return root / dataset.TRAIN_FILE, root / dataset.EVAL_FILE
