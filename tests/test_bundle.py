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


def _tf1_bundle(path, variables):
    """A GeneratorBundle around a TF1 V1 checkpoint written by TensorFlow's own (compat.v1) Saver."""
    from attnrnn_lib._note_seq import generator_pb2

    ckpt = str(path) + ".ckpt"
    with tf.Graph().as_default():
        tf_vars = [tf.compat.v1.get_variable(name, initializer=value) for name, value in variables.items()]
        saver = tf.compat.v1.train.Saver(tf_vars, sharded=False, write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            saver.save(sess, ckpt, write_meta_graph=False)
    proto = generator_pb2.GeneratorBundle()
    proto.generator_details.id = "attention_rnn"
    proto.checkpoint_file.append(pathlib.Path(ckpt).read_bytes())
    path.write_bytes(proto.SerializeToString())


def test_2016_layout_checkpoint_imports_by_role(tmp_path):
    """The 2016 TF 0.x names (SPEC §3.5, inferred; no such bundle survives) map onto the 2016 layout."""
    hp = PRESETS["magenta_2016"].replace(rnn_layer_sizes=(12, 10))
    tf.keras.utils.set_random_seed(4)
    model = AttentionRNN(hp)
    w = bundle.model_weights(model)
    p = "RNN/AttentionCellWrapper/"
    names = {p + "Linear/Matrix": "in_kernel", p + "Linear/Bias": "in_bias",
             p + "MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix": "lstm0_kernel",
             p + "MultiRNNCell/Cell0/BasicLSTMCell/Linear/Bias": "lstm0_bias",
             p + "MultiRNNCell/Cell1/BasicLSTMCell/Linear/Matrix": "lstm1_kernel",
             p + "MultiRNNCell/Cell1/BasicLSTMCell/Linear/Bias": "lstm1_bias",
             p + "Attention/Linear/Matrix": "query_kernel", p + "Attention/Linear/Bias": "query_bias",
             p + "Attention/AttnV": "attn_v", p + "AttnOutputProjection/Linear/Matrix": "out_kernel",
             p + "AttnOutputProjection/Linear/Bias": "out_bias", "fully_connected/weights": "fc_weights",
             "fully_connected/biases": "fc_biases"}
    variables = {name: w[ours] for name, ours in names.items()}
    variables[p + "Attention/AttnW"] = w["attn_w"][None, None]             # TF1 keeps U as a 1x1 conv filter
    variables["global_step"] = np.int64(1234)                              # training state is ignored
    _tf1_bundle(tmp_path / "old.mag", variables)
    b = bundle.read_bundle(str(tmp_path / "old.mag"))
    assert b.source == "magenta" and b.hparams.layout == "stack" and b.hparams.rnn_layer_sizes == (12, 10)
    x = encoding.encode_inputs([60, -2, 62, -2, 64, -1, -2, 67] * 3)[None]
    np.testing.assert_array_equal(model(x)[0], bundle.build_model(b)(x)[0])
    variables["RNN/AttentionCellWrapper/Mystery/Matrix"] = np.zeros([2, 2], np.float32)
    _tf1_bundle(tmp_path / "odd.mag", variables)
    with pytest.raises(UsageError, match="unrecognised variables: RNN/AttentionCellWrapper/Mystery"):
        bundle.read_bundle(str(tmp_path / "odd.mag"))
