"""~1,000 hostile files through both data commands: no crash, every bad file named with a reason, counts add up."""

import os
import re
import sys

import pytest

from attnrnn_lib import dataset, tfrecord
from attnrnn_lib._note_seq import music_pb2
from tests import hostile_files
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def suite(tmp_path_factory, nottingham_melody):
    root = tmp_path_factory.mktemp("hostile") / "music"
    kinds = hostile_files.build(root, sorted(nottingham_melody.glob("*.mid")), seed=0)
    yield root, kinds
    for dirpath, _, names in os.walk(root):  # let pytest clean up the unreadable files
        for n in names:
            p = os.path.join(dirpath, n)
            if not os.path.islink(p) and os.path.isfile(p):
                os.chmod(p, 0o600)


@pytest.fixture(scope="module")
def converted(suite, tmp_path_factory):
    root, _ = suite
    out = tmp_path_factory.mktemp("hostile_out") / "notesequences.tfrecord"
    # A wrapper process reports the largest resident size among the command and its workers.
    wrapper = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('PEAK_KIB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
               "sys.exit(r.returncode)")
    r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={root}", f"--output_file={out}",
                "--recursive", "--num_workers=2", python=[sys.executable, "-c", wrapper, sys.executable])
    peak_mib = int(re.search(r"PEAK_KIB (\d+)", r.stderr).group(1)) / 1024
    return r, out, peak_mib


def test_suite_is_big_and_varied(suite):
    root, kinds = suite
    files = [os.path.join(d, n) for d, _, names in os.walk(root) for n in names]
    assert len(files) >= 1000
    assert sum(len(v) for v in kinds.values()) >= 1000
    assert max(f.count(os.sep) for f in files) - str(root).count(os.sep) > 40        # deeply nested
    assert any(not n.isascii() for f in files for n in [os.path.basename(f)])        # unicode names


def test_convert_survives_and_accounts_for_every_file(suite, converted):
    root, kinds = suite
    r, out, peak_mib = converted
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    skipped = dict(re.findall(r"^WARNING skipped (.+?): (.+)$", r.stderr, flags=re.M))
    sequences = [music_pb2.NoteSequence.FromString(b) for b in tfrecord.read_records(out)]
    converted_names = {s.filename for s in sequences}
    summary = re.search(r"(\d+) converted \((\d+) NoteSequences\), (\d+) skipped", r.stderr)
    n_conv, n_seq, n_skip = map(int, summary.groups())

    assert n_conv == len(converted_names) and n_seq == len(sequences) and n_skip == len(skipped)
    assert not converted_names & set(skipped)
    everything = set().union(*kinds.values())
    assert converted_names | set(skipped) == everything
    assert kinds["good"] <= converted_names, sorted(kinds["good"] - converted_names)[:5]
    assert kinds["bad"] <= set(skipped), sorted(kinds["bad"] - set(skipped))[:5]
    assert all(reason.strip() for reason in skipped.values())
    # Reasons a user can act on, for the files built to break each rule.
    assert skipped["odd/pipe.mid"] == "not a regular file"
    assert skipped["odd/broken_link.mid"].startswith("unreadable")
    assert skipped["empty/empty_0.mid"] == "empty file"
    assert skipped["odd/notes.txt"] == "not a MIDI, MusicXML or ABC file"
    assert skipped["huge_time/past_limit_00.mid"].startswith("corrupt MIDI timing")
    assert skipped["lies/chunk_longer_than_file.mid"].startswith("truncated MIDI")
    assert all(skipped[f"random/bytes_{i:03d}.mid"].startswith(("not a readable MIDI", "truncated MIDI"))
               for i in range(150))
    # A 1 KB file whose last event sits at tick 2^28 used to cost note-seq a 2 GB tick table.
    assert peak_mib < 1500, f"a worker peaked at {peak_mib:.0f} MiB"


def test_create_dataset_on_the_survivors(converted, tmp_path):
    _, out, _ = converted
    n_sequences = len(tfrecord.read_records(out))
    r = run_cli("attnrnn_lib.cli.create_dataset", f"--input={out}", f"--output_dir={tmp_path}", "--eval_ratio=0.1")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
    split = re.search(r"(\d+) NoteSequences: (\d+) training, (\d+) eval", r.stderr)
    assert int(split.group(1)) == n_sequences == int(split.group(2)) + int(split.group(3))
    wrote = re.search(r"wrote (\d+) SequenceExamples \((\d+) training, (\d+) eval\)", r.stderr)
    n_train = len(tfrecord.read_records(tmp_path / dataset.TRAIN_FILE))
    n_eval = len(tfrecord.read_records(tmp_path / dataset.EVAL_FILE))
    assert tuple(map(int, wrote.groups())) == (n_train + n_eval, n_train, n_eval)
    for name, n in (("training", n_train), ("eval", n_eval)):
        stat = re.search(rf"{name}_melodies sequence_examples: (\d+)", r.stderr)
        assert int(stat.group(1)) == n
    assert n_train > 200  # the real tunes and the written ones all make it through
    # The drum-only and dense-chord files convert, and the melody extractor then sets them aside, counted.
    assert re.search(r"polyphonic_tracks_discarded: [1-9]", r.stderr)
