"""convert_dir_to_note_sequences: real files convert, every bad file is skipped with a named reason."""

import hashlib
import os

import pytest

from attnrnn_lib import midi_io, tfrecord
from attnrnn_lib._note_seq import music_pb2
from tests.conftest import run_cli, scale_melody, write_midi


@pytest.fixture()
def mixed_dir(tmp_path, nottingham_melody):
    d = tmp_path / "mixed"
    (d / "sub" / "deeper").mkdir(parents=True)
    real = sorted(nottingham_melody.glob("*.mid"))[:5]
    for f in real:
        (d / f.name).write_bytes(f.read_bytes())
    (d / "sub" / "nested.MID").write_bytes(real[0].read_bytes())  # upper-case extension, in a subfolder
    write_midi(d / "sub" / "deeper" / "written.midi", [scale_melody(bars=8)])
    (d / "random.mid").write_bytes(os.urandom(3000))
    (d / "truncated.mid").write_bytes(real[1].read_bytes()[:40])
    (d / "empty.mid").write_bytes(b"")
    (d / "notes.txt").write_text("not music")
    write_midi(d / "silent.mid", [[]])
    return d


def test_convert_names_every_skip(mixed_dir, tmp_path):
    out = tmp_path / "ns.tfrecord"
    report = midi_io.convert_directory(str(mixed_dir), str(out), recursive=True, num_workers=2)
    assert report.converted_files == 7 and report.sequences == 7
    assert report.skipped == {
        "empty.mid": "empty file",
        "notes.txt": "not a MIDI, MusicXML or ABC file",
        "silent.mid": "no notes",
        "random.mid": report.skipped["random.mid"],
        "truncated.mid": report.skipped["truncated.mid"],
    }
    assert report.skipped["random.mid"] == "not a readable MIDI file (OSError: MThd not found. Probably not a MIDI file)"
    assert report.skipped["truncated.mid"] == "truncated MIDI (the file ends inside a chunk)"
    assert "7 converted (7 NoteSequences), 5 skipped" in report.summary()
    seqs = [music_pb2.NoteSequence.FromString(r) for r in tfrecord.read_records(out)]
    names = [s.filename for s in seqs]
    assert names[-2:] == ["sub/nested.MID", "sub/deeper/written.midi"]  # files before subfolders
    s = seqs[0]
    assert s.collection_name == "mixed" and len(s.notes) > 50
    assert s.id == "/id/midi/mixed/" + hashlib.sha1(s.filename.encode()).hexdigest()


def test_not_recursive_by_default(mixed_dir, tmp_path):
    report = midi_io.convert_directory(str(mixed_dir), str(tmp_path / "ns.tfrecord"), num_workers=1)
    assert report.converted_files == 5


def test_same_input_same_bytes(mixed_dir, tmp_path):
    a, b = tmp_path / "a.tfrecord", tmp_path / "b.tfrecord"
    midi_io.convert_directory(str(mixed_dir), str(a), recursive=True, num_workers=2)
    midi_io.convert_directory(str(mixed_dir), str(b), recursive=True, num_workers=1)
    assert a.read_bytes() == b.read_bytes()


def test_whole_nottingham_set_converts(nottingham_full, tmp_path):
    report = midi_io.convert_directory(str(nottingham_full), str(tmp_path / "ns.tfrecord"), num_workers=2)
    assert report.converted_files == 1034 and report.skipped == {}


def test_cli_summary_and_errors(mixed_dir, tmp_path):
    out = tmp_path / "ns.tfrecord"
    r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={mixed_dir}", f"--output_file={out}",
                "--recursive")
    assert r.returncode == 0, r.stderr
    assert "skipped empty.mid: empty file" in r.stderr and "7 converted" in r.stderr
    before = out.read_bytes()
    cases = [
        ([f"--input_dir={mixed_dir}", f"--output_file={out}"], "already exists"),
        ([f"--input_dir={tmp_path / 'missing'}", f"--output_file={tmp_path / 'o2'}"], "not a directory"),
        ([f"--input_dir={mixed_dir}", f"--output_file={tmp_path / 'no' / 'dir.tfrecord'}"], "does not exist"),
        ([f"--input_dir={mixed_dir}", f"--output_file={tmp_path / 'o3'}", "--num_workers=0"], "--num_workers"),
        ([f"--output_file={tmp_path / 'o4'}"], "exactly one of --input_dir and --music21_corpus"),
        ([f"--music21_corpus=bach", f"--output_file={tmp_path / 'o5'}"], "unknown corpus bach"),
    ]
    for args, message in cases:
        r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", *args)
        assert r.returncode == 2, (args, r.stderr)
        errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error")]
        assert len(errors) == 1 and message in errors[0], r.stderr
    assert out.read_bytes() == before
    assert not any(p.name.startswith(("o2", "o3", "o4", "o5")) for p in tmp_path.iterdir())
    r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={mixed_dir}", f"--output_file={out}",
                "--overwrite")
    assert r.returncode == 0 and out.read_bytes() != before  # non-recursive now: fewer sequences
