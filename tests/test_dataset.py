"""NoteSequences -> SequenceExamples: Magenta's statistics on the real Nottingham set, TF-readable output."""

import collections

import numpy as np
import pytest

from attnrnn_lib import dataset, encoding, midi_io, tfrecord
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def nottingham_ns(tmp_path_factory, nottingham_melody):
    out = tmp_path_factory.mktemp("ns") / "nottingham.tfrecord"
    report = midi_io.convert_directory(str(nottingham_melody), str(out), num_workers=2)
    assert report.converted_files == 1034 and not report.skipped
    return out


def test_sequence_example_bytes_parse_in_tensorflow():
    import tensorflow as tf

    events = [60, -2, 62, -1, -2, 64, 67, 71, -2, -2, 72] * 5
    inputs, labels = encoding.encode(events)
    parsed = tf.train.SequenceExample.FromString(dataset.sequence_example_bytes(inputs, labels))
    ref = tf.train.SequenceExample()
    for v in inputs:
        ref.feature_lists.feature_list["inputs"].feature.add().float_list.value.extend(v)
    for v in labels:
        ref.feature_lists.feature_list["labels"].feature.add().int64_list.value.append(int(v))
    assert parsed == ref


def test_nottingham_statistics_match_magenta(nottingham_ns, tmp_path):
    """Magenta 2.1.4 on the same 1,034 files (shared/magenta/BASELINE.md): 1,104 pieces, 1,008 examples."""
    records = tfrecord.read_records(nottingham_ns)
    report = dataset.create_dataset(records, str(tmp_path), eval_ratio=0.0, num_workers=2)
    s = report.stats["training"]
    assert report.inputs == {"training": 1034, "eval": 0}
    assert s["transpositions_generated"] == 1104
    assert s["sequence_examples"] == 1008
    assert s["melodies_discarded_too_short"] == 46
    assert s["melodies_discarded_too_few_pitches"] == 1
    assert s["melodies_truncated"] == 479
    assert s["polyphonic_tracks_discarded"] == 49
    assert tfrecord.read_records(tmp_path / dataset.EVAL_FILE) == []


def test_examples_are_read_by_magentas_feature_spec(nottingham_ns, tmp_path):
    import tensorflow as tf

    records = tfrecord.read_records(nottingham_ns)[:40]
    dataset.create_dataset(records, str(tmp_path), eval_ratio=0.0, num_workers=1)
    spec = {"inputs": tf.io.FixedLenSequenceFeature([74], tf.float32),
            "labels": tf.io.FixedLenSequenceFeature([], tf.int64)}
    lengths = []
    for raw in tf.data.TFRecordDataset(str(tmp_path / dataset.TRAIN_FILE)):
        _, seq = tf.io.parse_single_sequence_example(raw, sequence_features=spec)
        x, y = seq["inputs"].numpy(), seq["labels"].numpy()
        assert x.shape == (y.shape[0], 74) and 0 <= y.min() and y.max() < 40
        # Rebuild the melody from its first input and the labels, re-encode it: the same arrays must come back.
        first = int(np.argmax(x[0, :36])) + 48 if x[0, 36] else encoding.NO_EVENT
        events = encoding.decode(y, [first])
        x2, y2 = encoding.encode(events)
        np.testing.assert_array_equal(x2, x)
        np.testing.assert_array_equal(y2, y)
        lengths.append(y.shape[0])
    # 7 bars minimum: 83 steps in 3/4 (12 per bar), 111 in 4/4; at most 512 events -> 511 steps.
    assert len(lengths) >= 35 and min(lengths) >= 83 and max(lengths) == 511


def test_split_is_reproducible_per_seed_and_keeps_tunes_whole(nottingham_ns, tmp_path):
    records = tfrecord.read_records(nottingham_ns)[:200]
    a = dataset.create_dataset(records, str(tmp_path / "a"), eval_ratio=0.25, seed=7, num_workers=2)
    b = dataset.create_dataset(records, str(tmp_path / "b"), eval_ratio=0.25, seed=7, num_workers=1)
    c = dataset.create_dataset(records, str(tmp_path / "c"), eval_ratio=0.25, seed=8, num_workers=2)
    for name in (dataset.TRAIN_FILE, dataset.EVAL_FILE):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / dataset.EVAL_FILE).read_bytes() != (tmp_path / "c" / dataset.EVAL_FILE).read_bytes()
    assert a.inputs == b.inputs and 30 <= a.inputs["eval"] <= 70  # ~25 % of 200 NoteSequences
    assert sum(a.inputs.values()) == 200 == sum(c.inputs.values())


def test_eval_ratio_one_sends_everything_to_eval(nottingham_ns, tmp_path):
    records = tfrecord.read_records(nottingham_ns)[:20]
    report = dataset.create_dataset(records, str(tmp_path), eval_ratio=1.0, num_workers=1)
    assert report.inputs == {"training": 0, "eval": 20}
    assert tfrecord.read_records(tmp_path / dataset.TRAIN_FILE) == []


def test_cli_end_to_end_and_bad_input(nottingham_ns, tmp_path):
    ok = run_cli("attnrnn_lib.cli.create_dataset", f"--input={nottingham_ns}", f"--output_dir={tmp_path / 'out'}",
                 "--eval_ratio=0.1", "--seed=3")
    assert ok.returncode == 0, ok.stderr
    assert "melodies_discarded_too_short" in ok.stderr and "SequenceExamples" in ok.stderr
    first = (tmp_path / "out" / dataset.TRAIN_FILE).read_bytes()

    again = run_cli("attnrnn_lib.cli.create_dataset", f"--input={nottingham_ns}", f"--output_dir={tmp_path / 'out'}")
    assert again.returncode == 2 and "already exists" in again.stderr
    assert (tmp_path / "out" / dataset.TRAIN_FILE).read_bytes() == first  # untouched

    corrupt = tmp_path / "corrupt.tfrecord"
    corrupt.write_bytes(nottingham_ns.read_bytes()[:5000])
    cases = {
        "--eval_ratio=1.5": ("outside [0, 1]", [f"--input={nottingham_ns}", f"--output_dir={tmp_path / 'x'}"]),
        "missing": ("no such file", [f"--input={tmp_path / 'nope.tfrecord'}", f"--output_dir={tmp_path / 'y'}"]),
        "corrupt": ("truncated", [f"--input={corrupt}", f"--output_dir={tmp_path / 'z'}"]),
    }
    for flag, (message, args) in cases.items():
        extra = [flag] if flag.startswith("--") else []
        r = run_cli("attnrnn_lib.cli.create_dataset", *args, *extra)
        assert r.returncode == 2, (flag, r.stderr)
        lines = [ln for ln in r.stderr.strip().splitlines() if ln.startswith("error")]
        assert len(lines) == 1 and message in lines[0], r.stderr
    for d in ("x", "y", "z"):
        assert not (tmp_path / d / dataset.TRAIN_FILE).exists()


def test_unwritable_output_dir_is_a_clear_error(nottingham_ns, tmp_path):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root): permissions cannot be tested")
        r = run_cli("attnrnn_lib.cli.create_dataset", f"--input={nottingham_ns}", f"--output_dir={locked}")
        assert r.returncode == 2 and "not writable" in r.stderr
    finally:
        locked.chmod(0o700)
