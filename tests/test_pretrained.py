"""The shipped model: it loads without flags, it is trained (not random), and the main job's command works."""

import pathlib

import numpy as np
import pytest

from attnrnn_lib import bundle, generate, train
from tests.conftest import run_cli

PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / "pretrained" / "attention_rnn.mag"


@pytest.fixture(scope="module")
def shipped():
    b = bundle.read_bundle(str(PRETRAINED))
    return b, bundle.build_model(b)


def test_shipped_bundle_is_ours_with_magentas_default_size(shipped):
    b, model = shipped
    assert b.source == "attnrnn" and b.hparams.rnn_layer_sizes == (128, 128) and b.hparams.attn_length == 40
    assert PRETRAINED.stat().st_size < 5 * 2**20


def test_shipped_model_predicts_real_folk_melodies_far_better_than_chance(shipped, nottingham_examples):
    """Nottingham tunes are not in its training data (music21's Irish/Scottish books are)."""
    _, model = shipped
    metrics = train.evaluate(model, [str(nottingham_examples[1])], batch_size=64, dropout=False)
    assert metrics["loss"] < 1.6, metrics                 # chance is ln(40) = 3.69
    assert metrics["metrics/accuracy"] > 0.55, metrics


def test_shipped_model_generates_melodies_in_the_primers_key(shipped):
    _, model = shipped
    melodies = generate.generate(model, [60, -2, 62, -2, 64, -2, 65, -2, 67, -2, -2, -2], num_steps=128,
                                 num_outputs=4, seed=0)
    pitches = np.array([e for m in melodies for e in m.events[14:] if e >= 0])
    assert len(pitches) > 40
    in_c_major = np.isin(pitches % 12, [0, 2, 4, 5, 7, 9, 11]).mean()
    assert in_c_major > 0.8, in_c_major                   # a trained model stays in key; a random one does not


def test_main_job_command_writes_midi_heatmap_and_audio(tmp_path):
    r = run_cli("attnrnn_lib.cli.generate", f"--output_dir={tmp_path}", "--num_outputs=2", "--num_steps=64",
                "--primer_melody=[60, -2, 60, -2, 67, -2, 67, -2]", "--attention_png", "--wav")
    assert r.returncode == 0, r.stderr
    assert sorted(p.suffix for p in tmp_path.iterdir()) == [".mid", ".mid", ".png", ".png", ".wav", ".wav"]
    assert "attnrnn bundle, [128, 128]" in r.stderr
