"""Bundles: Magenta's imported exactly (checked against Magenta's own probabilities), ours round-trip."""

import pathlib

import numpy as np
import pytest
import tensorflow as tf

from attnrnn_lib import bundle, encoding
from attnrnn_lib.config import PRESETS
from attnrnn_lib.errors import UsageError
from attnrnn_lib.model import AttentionRNN
from tests.conftest import run_cli, shared

REFERENCE = pathlib.Path(__file__).parent / "data" / "magenta_alexandrejup_softmax.npz"


@pytest.fixture(scope="module")
def magenta_path():
    return str(shared("bundles", "alexandrejup_attention_rnn.mag"))


def test_magenta_bundle_gives_magentas_own_probabilities(magenta_path):
    """tests/data/…npz was written by bench/magenta_bundle_softmax.py running Magenta 2.1.4 on this bundle."""
    reference = np.load(REFERENCE)
    b = bundle.read_bundle(magenta_path)
    assert b.source == "magenta" and b.hparams.rnn_layer_sizes == (64, 64) and b.hparams.attn_length == 40
    assert b.hparams.layout == "first_layer" and len(b.weights) == 14
    inputs = encoding.encode_inputs(reference["melody"])
    np.testing.assert_array_equal(inputs, reference["inputs"])        # our encoder == note-seq's, too
    model = bundle.build_model(b)
    logits, attention = model(inputs[None])
    np.testing.assert_allclose(tf.nn.softmax(logits)[0], reference["softmax"], atol=1e-5)
    step_logits, _ = model.stepwise(inputs[None])
    np.testing.assert_allclose(tf.nn.softmax(step_logits)[0], reference["softmax"], atol=1e-5)


def test_our_bundle_round_trips_weights_and_hparams(tmp_path, magenta_path):
    hp = PRESETS["magenta_2016"].replace(rnn_layer_sizes=(24, 20), attn_length=12)
    model = AttentionRNN(hp)
    path = tmp_path / "ours.mag"
    bundle.save_bundle(model, str(path), description="round trip")
    b = bundle.read_bundle(str(path))
    assert b.hparams == hp and b.description == "round trip" and b.source == "attnrnn"
    again = bundle.build_model(b)
    x = encoding.encode_inputs([60, -2, 62, -2, 64, -1, -2, 67] * 4)[None]
    np.testing.assert_array_equal(model(x)[0], again(x)[0])
    with pytest.raises(UsageError, match="already exists"):
        bundle.save_bundle(model, str(path))
    # Saving an imported Magenta model as ours keeps its numbers.
    magenta = bundle.build_model(bundle.read_bundle(magenta_path))
    bundle.save_bundle(magenta, str(tmp_path / "converted.mag"))
    converted = bundle.build_model(bundle.read_bundle(str(tmp_path / "converted.mag")))
    np.testing.assert_array_equal(magenta(x)[0], converted(x)[0])


def test_bad_bundles_are_one_clear_error(tmp_path, magenta_path):
    good = pathlib.Path(magenta_path).read_bytes()
    cases = {"missing.mag": None, "truncated.mag": good[:len(good) // 2], "text.mag": b"hello, not a bundle",
             "empty.mag": b""}
    from attnrnn_lib._note_seq import generator_pb2

    other = generator_pb2.GeneratorBundle.FromString(good)
    other.generator_details.id = "basic_rnn"
    cases["basic.mag"] = other.SerializeToString()
    for name, data in cases.items():
        if data is not None:
            (tmp_path / name).write_bytes(data)
        with pytest.raises(UsageError) as e:
            bundle.read_bundle(str(tmp_path / name))
        assert str(e.value).startswith("--bundle_file:") and "\n" not in str(e.value), name
    r = run_cli("attnrnn_lib.cli.generate", f"--bundle_file={tmp_path / 'truncated.mag'}",
                f"--output_dir={tmp_path / 'out'}")
    assert r.returncode == 2 and r.stderr.startswith("error: --bundle_file:")


def test_run_dir_to_bundle_to_generation(tmp_path, nottingham_examples):
    """Magenta's flow: train, --save_generator_bundle from the run, then generate from the bundle alone."""
    run_dir = tmp_path / "run"
    r = run_cli("attnrnn_lib.cli.train", f"--run_dir={run_dir}", "--hparams=preset=ci", "--num_training_steps=3",
                f"--sequence_example_file={nottingham_examples[0]}")
    assert r.returncode == 0, r.stderr
    mag = tmp_path / "model.mag"
    r = run_cli("attnrnn_lib.cli.generate", f"--run_dir={run_dir}", "--save_generator_bundle",
                f"--bundle_file={mag}", "--bundle_description=three steps")
    assert r.returncode == 0, r.stderr
    assert bundle.read_bundle(str(mag)).hparams == PRESETS["ci"]
    outs = []
    for flag in (f"--bundle_file={mag}", f"--run_dir={run_dir}"):
        out = tmp_path / flag[2:5]
        r = run_cli("attnrnn_lib.cli.generate", flag, f"--output_dir={out}", "--num_outputs=2", "--num_steps=32")
        assert r.returncode == 0, r.stderr
        outs.append(sorted(p.read_bytes() for p in out.glob("*.mid")))
    assert outs[0] == outs[1] and len(outs[0]) == 2                  # the bundle is the run's model
