"""HParams: Magenta's defaults and presets, both --hparams syntaxes, one-line errors."""

import pytest

from attnrnn_lib.config import PRESETS, HParams, parse_hparams
from attnrnn_lib.errors import UsageError
from tests.conftest import run_cli


def test_defaults_are_magentas_attention_rnn():
    hp = HParams()
    assert (hp.batch_size, hp.rnn_layer_sizes, hp.dropout_keep_prob, hp.attn_length, hp.clip_norm,
            hp.learning_rate) == (128, (128, 128), 0.5, 40, 3.0, 0.001)
    assert parse_hparams("") == PRESETS["magenta_2016"] == hp
    assert PRESETS["magenta_2017"].layout == "first_layer" and PRESETS["magenta_2017"].clip_mode == "per_tensor"
    assert PRESETS["magenta_2017"].decay_rate == 1.0


@pytest.mark.parametrize("text", ["batch_size=64,rnn_layer_sizes=[64,64]",
                                  "{'batch_size':64,'rnn_layer_sizes':[64,64]}",
                                  '{"batch_size": 64, "rnn_layer_sizes": [64, 64]}',
                                  " batch_size = 64 , rnn_layer_sizes = [64, 64] "])
def test_both_magenta_syntaxes(text):
    hp = parse_hparams(text)
    assert hp.batch_size == 64 and hp.rnn_layer_sizes == (64, 64) and hp.attn_length == 40


def test_presets_names_and_2016_aliases():
    hp = parse_hparams("preset=magenta_2017,batch_size=32,layout=stack")
    assert hp.batch_size == 32 and hp.layout == "stack" and hp.clip_mode == "per_tensor"
    assert parse_hparams("initial_learning_rate=0.01").learning_rate == 0.01
    assert parse_hparams("learning_rate=1").learning_rate == 1.0      # an int is a fine float
    assert parse_hparams("use_cudnn=False") == HParams()               # Magenta's inherited flag, accepted


@pytest.mark.parametrize("text, words", [
    ("batch_sise=64", ["unknown name 'batch_sise'", "batch_size", "rnn_layer_sizes"]),
    ("batch_size=64.5", ["batch_size", "wrong type"]),
    ("rnn_layer_sizes=64", ["rnn_layer_sizes", "wrong type"]),
    ("rnn_layer_sizes=[64,0]", ["rnn_layer_sizes", "positive"]),
    ("batch_size=0", ["batch_size must be >= 1"]),
    ("dropout_keep_prob=1.5", ["dropout_keep_prob"]),
    ("layout=sideways", ["layout must be one of"]),
    ("{'batch_size': 64", ["not a Python dict"]),
    ("preset=huge", ["unknown preset"]),
    ("batch_size", ["expected name=value"]),
    ("use_cudnn=True", ["use_cudnn"]),
])
def test_bad_hparams_are_one_clear_error(text, words):
    with pytest.raises(UsageError) as e:
        parse_hparams(text)
    message = str(e.value)
    assert message.startswith("--hparams:") and "\n" not in message
    for w in words:
        assert w in message


def test_hparams_round_trip_json():
    hp = parse_hparams("preset=ci,attn_length=5")
    assert HParams.from_json(hp.to_json()) == hp


def test_cli_bad_hparams_exit_2_before_anything_is_written(tmp_path):
    r = run_cli("attnrnn_lib.cli.train", f"--run_dir={tmp_path / 'run'}", "--hparams=batch_sise=3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown name 'batch_sise'" in lines[0] and "valid names" in lines[0]
    assert not (tmp_path / "run").exists()
