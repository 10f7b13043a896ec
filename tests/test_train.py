"""Training on real Nottingham SequenceExamples: the loss falls, runs resume after a kill, the eval job works."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from attnrnn_lib import train
from attnrnn_lib.config import PRESETS
from tests.conftest import run_cli

CI = PRESETS["ci"]


def read_events(directory):
    """{tag: [(step, value or image bytes)]} from the TensorBoard event files in `directory`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                array = tf.make_ndarray(v.tensor)
                out.setdefault(v.tag, []).append((event.step, array if array.dtype == object else float(array)))
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory, nottingham_examples):
    run_dir = tmp_path_factory.mktemp("run")
    run = train.Run(str(run_dir), CI, seed=0)
    last = train.train(run, [str(nottingham_examples[0])], num_steps=40, summary_frequency=10,
                       save_checkpoint_steps=20, seed=0)
    return run_dir, last


def test_loss_falls_and_tensorboard_has_magentas_scalars_and_a_heatmap(trained):
    run_dir, last = trained
    events = read_events(run_dir / "train")
    for name in train.METRICS + ("global_step/sec", "examples/sec", "tokens/sec"):
        assert [s for s, _ in events[name]] == [10, 20, 30, 40], name
    losses = [v for _, v in events["loss"]]
    assert losses[-1] < losses[0] - 0.5, losses           # from ~3.7 (uniform over 40 classes) down
    assert np.isclose(events["metrics/perplexity"][-1][1], np.exp(losses[-1]), rtol=1e-4)
    assert 0.3 < events["metrics/accuracy"][-1][1] <= 1.0
    assert last["loss"] == pytest.approx(losses[-1], rel=1e-5)
    images = events["attention/heatmap"]
    assert len(images) == 4 and images[0][1][2].startswith(b"\x89PNG")     # [width, height, png]
    assert sorted(os.path.basename(p) for p in glob.glob(str(run_dir / "train" / "*.index"))) == \
        ["model.ckpt-20.index", "model.ckpt-40.index"]


def test_eval_job_evaluates_each_checkpoint_once_without_updating(trained, nottingham_examples):
    run_dir, _ = trained
    run = train.Run(str(run_dir), CI, write_hparams=False)
    results = train.evaluate_loop(run, [str(nottingham_examples[1])], num_steps=40, timeout_secs=1,
                                  interval_secs=0, dropout=False)
    assert [step for step, _ in results] == [40]
    metrics = results[0][1]
    assert 0.5 < metrics["loss"] < 3.0 and 0.3 < metrics["metrics/accuracy"] < 1.0
    weights = [w.numpy().copy() for w in run.model.weights]
    again = train.evaluate(run.model, [str(nottingham_examples[1])], CI.batch_size, dropout=False)
    assert again == metrics                                            # deterministic and no weight update
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(weights, run.model.weights))
    magenta_style = train.evaluate(run.model, [str(nottingham_examples[1])], CI.batch_size, dropout=True)
    assert magenta_style["loss"] > metrics["loss"]                     # Magenta evaluates with dropout on
    events = read_events(run_dir / "eval")
    assert events["loss"][0][0] == 40 and "attention/heatmap" in events


def test_cli_eval_job_stops_at_num_training_steps(trained, nottingham_examples):
    run_dir, _ = trained
    r = run_cli("attnrnn_lib.cli.train", f"--run_dir={run_dir}", "--eval", "--hparams=preset=ci",
                f"--sequence_example_file={nottingham_examples[1]}", "--num_training_steps=40",
                "--eval_timeout_secs=5")
    assert r.returncode == 0, r.stderr
    assert "Eval at step 40" in r.stderr


def test_restart_with_other_hparams_is_a_clear_error(trained, nottingham_examples):
    run_dir, _ = trained
    r = run_cli("attnrnn_lib.cli.train", f"--run_dir={run_dir}", "--hparams=preset=ci,attn_length=5",
                f"--sequence_example_file={nottingham_examples[0]}", "--num_training_steps=50")
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "attn_length: 8 in the run, 5 now" in r.stderr


def test_mixed_precision_trains_with_float32_weights(tmp_path, nottingham_examples, trained):
    """bfloat16 projections: the loss falls like float32's, the weights stay float32, the numbers differ."""
    run = train.Run(str(tmp_path), CI, seed=0, mixed_precision=True)
    last = train.train(run, [str(nottingham_examples[0])], num_steps=40, summary_frequency=10,
                       save_checkpoint_steps=40, seed=0)
    float32_loss = trained[1]["loss"]
    assert last["loss"] == pytest.approx(float32_loss, rel=0.05) and last["loss"] != float32_loss
    assert read_events(tmp_path / "train")["loss"][0][1] > last["loss"] + 0.5
    assert {str(v.dtype) for v in run.model.trainable_variables} == {"float32"}
    logits, _ = run.model(tf.zeros([2, 5, 74]))
    assert logits.dtype == tf.float32


_TWO_REPLICAS_PROBE = """
import dataclasses, json, sys
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from attnrnn_lib import train
from attnrnn_lib.config import PRESETS
files, out_dir = [sys.argv[1]], sys.argv[2]
# One strategy of each kind for the process (two MirroredStrategy objects reuse the same collective keys).
strategies = {"one": tf.distribute.OneDeviceStrategy("/cpu:0"),
              "two": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])}
# The default 2016 layout and its global-norm clipping (the per-tensor mode goes through the same lines), no
# dropout (each replica draws its own masks) and a clip that every step hits.
hp = dataclasses.replace(PRESETS["ci"], layout="stack", clip_mode="global", dropout_keep_prob=1.0, clip_norm=0.01)
weights = {}
for name, strategy in strategies.items():
    run = train.Run(f"{out_dir}/{name}", hp, seed=0, strategy=strategy)
    start = [v.numpy() for v in run.model.trainable_variables]
    train.train(run, files, num_steps=2, summary_frequency=2, save_checkpoint_steps=100, seed=0)
    weights[name] = [v.numpy() for v in run.model.trainable_variables]
# The two replicas' checkpoint, restored on one device (trained on several GPUs, generated with on a laptop).
again = train.Run(f"{out_dir}/two", hp, strategy=strategies["one"], write_hparams=False)
restored_step = again.restore()
print(json.dumps({
    "replicas": strategies["two"].num_replicas_in_sync,
    "max_difference": max(float(np.abs(a - b).max()) for a, b in zip(weights["one"], weights["two"])),
    "smallest_move": min(float(np.abs(a - b).max()) for a, b in zip(start, weights["one"])),
    "restored_step": restored_step,
    "restored_equal": all(np.array_equal(a, v.numpy()) for a, v in zip(weights["two"],
                                                                       again.model.trainable_variables))}))
"""


def test_two_replicas_train_like_one_device_and_clip_the_whole_batchs_gradient(tmp_path, nottingham_examples):
    """The multi-GPU/TPU path, run on two logical CPU devices: a batch split across replicas must make the same
    update as the whole batch on one device. Magenta clips the whole batch's gradient; Keras' clipnorm clips each
    replica's share before the sum, which let two replicas step up to twice as far (weights apart by 0.02 after
    two steps here). In a fresh process: logical devices are fixed when TensorFlow starts."""
    r = subprocess.run([sys.executable, "-c", _TWO_REPLICAS_PROBE, str(nottingham_examples[0]), str(tmp_path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2
    assert result["smallest_move"] > 1e-3, result                   # every weight moved: the steps were taken
    assert result["max_difference"] < 1e-5, result
    assert result["restored_step"] == 2 and result["restored_equal"], result


def test_get_strategy_makes_one_strategy_per_process():
    """A second TPU initialisation would wipe the TPU, and a second MirroredStrategy would reuse the first one's
    collective keys: every Run in a process (a notebook trains several) must share one strategy."""
    first = train.get_strategy()
    assert isinstance(first, tf.distribute.Strategy) and train.get_strategy() is first
