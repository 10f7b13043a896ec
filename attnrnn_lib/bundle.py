"""`.mag` bundles: ours (weights + full hparams) and Magenta's (TF1 checkpoints), read and written.

A bundle is note-seq's GeneratorBundle protobuf (SPEC §6): generator_details {id, description},
checkpoint_file (bytes), metagraph_file (bytes), bundle_details {description}. Magenta puts a TF1 checkpoint and
the generate graph there; the graph is the only record of the layer sizes, which is why a wrong `--hparams`
crashes it. Ours puts an .npz of the weights in checkpoint_file and a JSON header with the complete hparams in
metagraph_file, so a bundle describes itself.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import pathlib
import re
import tempfile

import numpy as np

from attnrnn_lib import __version__
from attnrnn_lib._note_seq import generator_pb2
from attnrnn_lib.config import PRESETS, HParams
from attnrnn_lib.errors import UsageError

GENERATOR_ID = "attention_rnn"
DESCRIPTION = "Melody RNN with lookback encoding and attention."
FORMAT = "attnrnn-bundle"
# The shipped model, beside the package in a source checkout (README: install with -e).
PRETRAINED = pathlib.Path(__file__).resolve().parents[1] / "pretrained" / "attention_rnn.mag"

# TF1 variable names -> roles (SPEC §3.5), by the parts of the name that say what a variable is, so that both the
# 2017+ names (verified on a real bundle) and the 2016 TF 0.x names (inferred by role) map:
#   2017: rnn/multi_rnn_cell/cell_0/attention_cell_wrapper/{kernel, basic_lstm_cell/kernel, attention/kernel, ...}
#   2016: RNN/AttentionCellWrapper/{Linear/Matrix, MultiRNNCell/Cell0/BasicLSTMCell/Linear/Matrix, ...}
_LSTM = re.compile(r"(?:cell_?(\d+)/)?basic_?lstm_?cell")
_WRAPPER = re.compile(r"attention_?cell_?wrapper")
_TRAINING_ONLY = re.compile(r"(^|/)(global_step|beta[12]_power)$|/adam(_1)?$")


def _role(name: str) -> str | None:
    """Our weight name for one TF1 variable, or None if it is not part of the attention RNN."""
    n = name.lower()
    kind = "bias" if n.endswith(("bias", "biases")) else "kernel"
    if n.startswith("fully_connected/"):
        return "fc_biases" if kind == "bias" else "fc_weights"
    if not _WRAPPER.search(n) and not _LSTM.search(n):
        return None
    if re.search(r"attn_?w$", n):
        return "attn_w"
    if re.search(r"attn_?v$", n):
        return "attn_v"
    if re.search(r"attn_?output_?projection/", n):
        return f"out_{kind}"
    lstm = _LSTM.search(n)
    if lstm:
        return f"lstm{int(lstm.group(1) or 0)}_{kind}"
    if re.search(r"/attention/(linear/)?(matrix|kernel|bias)$", n):
        return f"query_{kind}"
    if re.search(r"attention_?cell_?wrapper/(linear/)?(matrix|kernel|bias)$", n):
        return f"in_{kind}"
    return None


@dataclasses.dataclass
class Bundle:
    """What a bundle holds: the hparams, the weights by our names, and where they came from."""

    hparams: HParams
    weights: dict[str, np.ndarray]
    description: str = ""
    source: str = "attnrnn"      # or "magenta"


def _short(name: str) -> str:
    return name.rsplit("/", 1)[-1].split(":")[0]


def model_weights(model) -> dict[str, np.ndarray]:
    return {_short(v.path): v.numpy() for v in model.weights}


def build_model(bundle: Bundle):
    """A model with the bundle's weights (every weight must be present, with the right shape)."""
    from attnrnn_lib.model import AttentionRNN

    model = AttentionRNN(bundle.hparams)
    missing = [_short(v.path) for v in model.weights if _short(v.path) not in bundle.weights]
    if missing:
        raise UsageError(f"--bundle_file: the bundle lacks weights {', '.join(missing)}")
    for v in model.weights:
        value = bundle.weights[_short(v.path)]
        if tuple(value.shape) != tuple(v.shape):
            raise UsageError(f"--bundle_file: weight {_short(v.path)} has shape {list(value.shape)}, the "
                             f"hparams need {list(v.shape)}")
        v.assign(value)
    return model


def save_bundle(model, path: str, description: str = "", overwrite: bool = False) -> None:
    """Writes our `.mag` for `model` atomically (never over an existing file unless `overwrite`)."""
    if os.path.exists(path) and not overwrite:
        raise UsageError(f"--bundle_file: {path} already exists (remove it or choose another name)")
    weights = io.BytesIO()
    np.savez(weights, **model_weights(model))
    header = {"format": FORMAT, "version": 1, "attnrnn": __version__,
              "hparams": json.loads(model.hparams.to_json())}
    proto = generator_pb2.GeneratorBundle()
    proto.generator_details.id, proto.generator_details.description = GENERATOR_ID, DESCRIPTION
    proto.checkpoint_file.append(weights.getvalue())
    proto.metagraph_file = json.dumps(header, sort_keys=True).encode()
    proto.bundle_details.description = description
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".bundle-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(proto.SerializeToString(deterministic=True))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def read_bundle(path: str) -> Bundle:
    """Reads our bundles and Magenta's; a clear UsageError for anything else."""
    flag = "--bundle_file"
    if not os.path.isfile(path):
        raise UsageError(f"{flag}: no such file: {path}")
    with open(path, "rb") as f:
        data = f.read()
    proto = generator_pb2.GeneratorBundle()
    try:
        proto.ParseFromString(data)
    except Exception:
        raise UsageError(f"{flag}: {path} is not a .mag bundle (not a GeneratorBundle protobuf, or truncated)") \
            from None
    if not proto.checkpoint_file or not proto.generator_details.id:
        raise UsageError(f"{flag}: {path} is not a .mag bundle (no generator id or checkpoint inside)")
    if proto.generator_details.id != GENERATOR_ID:
        raise UsageError(f"{flag}: {path} is a {proto.generator_details.id!r} bundle, not {GENERATOR_ID!r}")
    description = proto.bundle_details.description
    if proto.metagraph_file[:1] == b"{":
        return _read_ours(path, proto, description)
    return _import_magenta(path, proto, description)


def _read_ours(path, proto, description) -> Bundle:
    try:
        header = json.loads(proto.metagraph_file)
        assert header.get("format") == FORMAT
        hparams = HParams(**{k: tuple(v) if isinstance(v, list) else v for k, v in header["hparams"].items()})
        with np.load(io.BytesIO(proto.checkpoint_file[0])) as npz:
            weights = {k: npz[k] for k in npz.files}
    except UsageError:
        raise
    except Exception as e:
        raise UsageError(f"--bundle_file: {path} is damaged ({type(e).__name__}: {e})") from None
    return Bundle(hparams, weights, description, "attnrnn")


def _attention_length(metagraph: bytes, width: int) -> int:
    """L from the generate graph's zero attention-window state ([batch, L*A]); Magenta's 40 if not found."""
    import tensorflow as tf

    try:
        graph = tf.compat.v1.MetaGraphDef.FromString(metagraph).graph_def
    except Exception:
        return 40
    nodes = {n.name: n for n in graph.node}
    for name in graph.node:
        if name.name.endswith("AttentionCellWrapperZeroState/zeros_3") and name.op == "Fill":
            shape_node = nodes.get(name.input[0].split(":")[0])
            for i in shape_node.input if shape_node is not None else []:
                const = nodes.get(i.split(":")[0])
                if const is not None and const.op == "Const" and i.split(":")[0].endswith(("Const_13", "Const_7")):
                    size = int(tf.make_ndarray(const.attr["value"].tensor).reshape(-1)[0])
                    if size % width == 0:
                        return size // width
    return 40


def _import_magenta(path, proto, description) -> Bundle:
    """Magenta's TF1 checkpoint -> our weights; layout, layer sizes and attention length inferred from it."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = os.path.join(tmp, "model.ckpt")
        with open(ckpt, "wb") as f:
            f.write(proto.checkpoint_file[0])
        try:
            reader = tf.compat.v1.train.NewCheckpointReader(ckpt)
        except Exception:
            raise UsageError(f"--bundle_file: {path}: the checkpoint inside cannot be read (truncated?)") from None
        names = [n for n in reader.get_variable_to_shape_map() if not _TRAINING_ONLY.search(n.lower())]
        weights, unknown = {}, []
        for name in names:
            ours = _role(name)
            if ours is None or ours in weights:
                unknown.append(name)
                continue
            value = reader.get_tensor(name)
            weights[ours] = value.reshape(value.shape[-2:]) if ours == "attn_w" else value
        # 2016: the LSTM stack sits inside the wrapper (.../AttentionCellWrapper/MultiRNNCell/Cell1/...).
        stack = any(re.search(r"attention_?cell_?wrapper/multi_?rnn_?cell", n.lower()) for n in names)
    if unknown or "lstm0_kernel" not in weights or "attn_v" not in weights:
        raise UsageError(f"--bundle_file: {path}: not an attention_rnn checkpoint Magenta wrote "
                         f"(unrecognised variables: {', '.join(sorted(unknown)[:4]) or 'none'})")
    layers = sorted(int(k[4:-7]) for k in weights if k.startswith("lstm") and k.endswith("_kernel"))
    sizes = tuple(weights[f"lstm{k}_kernel"].shape[1] // 4 for k in layers)
    attn_length = _attention_length(proto.metagraph_file, weights["attn_v"].shape[0])
    hparams = PRESETS["magenta_2016" if stack else "magenta_2017"].replace(rnn_layer_sizes=sizes,
                                                                          attn_length=attn_length)
    return Bundle(hparams, weights, description, "magenta")
