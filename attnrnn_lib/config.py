"""Hyperparameters: one frozen dataclass, Magenta's presets, and both of Magenta's `--hparams` syntaxes.

    >>> parse_hparams("batch_size=64,rnn_layer_sizes=[64,64]").batch_size
    64
    >>> parse_hparams("{'batch_size':64,'rnn_layer_sizes':[64,64]}").rnn_layer_sizes
    (64, 64)
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import re
import typing

from attnrnn_lib.errors import UsageError

LAYOUTS = ("stack", "first_layer")      # 2016: attention wraps the whole stack; 2017+: the first layer only
CLIP_MODES = ("global", "per_tensor")   # 2016: clip_by_global_norm; 2017+: clip_by_norm per gradient tensor


@dataclasses.dataclass(frozen=True)
class HParams:
    """Everything that shapes the model and its training. Defaults are Magenta's attention_rnn (SPEC §0, §4)."""

    batch_size: int = 128
    rnn_layer_sizes: tuple[int, ...] = (128, 128)
    dropout_keep_prob: float = 0.5
    attn_length: int = 40
    clip_norm: float = 3.0
    learning_rate: float = 0.001
    layout: str = "stack"
    clip_mode: str = "global"
    decay_steps: int = 1000          # learning rate x decay_rate every decay_steps (staircase), as 2016 Magenta
    decay_rate: float = 0.97         # 1.0 = constant learning rate (2017+ Magenta)

    def __post_init__(self):
        object.__setattr__(self, "rnn_layer_sizes", tuple(self.rnn_layer_sizes))
        problems = []
        for name in ("batch_size", "attn_length", "decay_steps"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.rnn_layer_sizes or any(u < 1 for u in self.rnn_layer_sizes):
            problems.append(f"rnn_layer_sizes must be a non-empty list of positive ints, got "
                            f"{list(self.rnn_layer_sizes)}")
        if not 0.0 < self.dropout_keep_prob <= 1.0:
            problems.append(f"dropout_keep_prob must be in (0, 1], got {self.dropout_keep_prob}")
        for name in ("clip_norm", "learning_rate", "decay_rate"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        if self.layout not in LAYOUTS:
            problems.append(f"layout must be one of {', '.join(LAYOUTS)}, got {self.layout!r}")
        if self.clip_mode not in CLIP_MODES:
            problems.append(f"clip_mode must be one of {', '.join(CLIP_MODES)}, got {self.clip_mode!r}")
        if problems:
            raise UsageError("--hparams: " + "; ".join(problems))

    @property
    def attn_size(self) -> int:
        """Width of the attention vector and window slots: the wrapped cell's output size (SPEC §3.2/§3.3)."""
        return self.rnn_layer_sizes[-1] if self.layout == "stack" else self.rnn_layer_sizes[0]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "HParams":
        return cls(**json.loads(text))

    def replace(self, **changes) -> "HParams":
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, HParams] = {
    # The 2016 attention_rnn: AttentionCellWrapper around the whole LSTM stack, global-norm clipping, decay.
    "magenta_2016": HParams(),
    # Magenta since May 2017 (and its released bundles): attention on the first layer, per-tensor clipping.
    "magenta_2017": HParams(layout="first_layer", clip_mode="per_tensor", decay_rate=1.0),
    # Tiny, for tests and notebook smoke runs.
    "ci": HParams(batch_size=8, rnn_layer_sizes=(16, 16), attn_length=8, layout="first_layer",
                  clip_mode="per_tensor", decay_rate=1.0, dropout_keep_prob=0.9, learning_rate=0.01),
}
DEFAULT_PRESET = "magenta_2016"
_ALIASES = {"initial_learning_rate": "learning_rate"}   # the 2016 name
_IGNORED = {"use_cudnn", "residual_connections"}         # Magenta inherited defaults; must stay False here


def _names() -> str:
    return ", ".join(f.name for f in dataclasses.fields(HParams))


def _split_assignments(text: str) -> dict[str, str]:
    """'a=1,b=[2,3],c=x' -> {'a': '1', 'b': '[2,3]', 'c': 'x'}; commas inside brackets do not split."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[(" and 1 or (ch in "])" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    out = {}
    for part in filter(None, (p.strip() for p in parts)):
        m = re.fullmatch(r"([A-Za-z_]\w*)\s*=\s*(.*)", part)
        if not m:
            raise UsageError(f"--hparams: cannot read {part!r}; expected name=value (valid names: {_names()})")
        out[m.group(1)] = m.group(2).strip()
    return out


def _literal(name: str, text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text  # a bare word such as layout=stack


def _coerce(name: str, value):
    field = {f.name: f for f in dataclasses.fields(HParams)}[name]
    kind = typing.get_type_hints(HParams)[name]
    ok = {int: isinstance(value, int) and not isinstance(value, bool),
          float: isinstance(value, (int, float)) and not isinstance(value, bool),
          bool: isinstance(value, bool),
          str: isinstance(value, str)}.get(kind)
    if kind == tuple[int, ...]:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    if not ok:
        raise UsageError(f"--hparams: {name}={value!r} has the wrong type; expected {field.type}")
    return float(value) if kind is float else value


def parse_hparams(text: str | None, base: HParams | None = None) -> HParams:
    """Reads `--hparams` in Magenta's current (`a=1,b=[2,3]`) or 2016 (`{'a': 1}`) syntax.

    `preset=<name>` (first) starts from one of PRESETS instead of `base`.

    Raises:
      UsageError: unknown names (the message lists the valid ones), wrong types, or out-of-range values.
    """
    base = base or PRESETS[DEFAULT_PRESET]
    text = (text or "").strip()
    if text.startswith("{"):
        try:
            pairs = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise UsageError(f"--hparams: not a Python dict literal: {text!r}") from None
        if not isinstance(pairs, dict) or not all(isinstance(k, str) for k in pairs):
            raise UsageError(f"--hparams: expected a dict of names to values, got {text!r}")
    else:
        pairs = {k: _literal(k, v) for k, v in _split_assignments(text).items()}
    if "preset" in pairs:
        name = pairs.pop("preset")
        if name not in PRESETS:
            raise UsageError(f"--hparams: unknown preset {name!r}; presets: {', '.join(PRESETS)}")
        base = PRESETS[name]
    changes = {}
    for key, value in pairs.items():
        key = _ALIASES.get(key, key)
        if key in _IGNORED:
            if value not in (False, 0):
                raise UsageError(f"--hparams: {key}={value!r} is not supported (only False)")
            continue
        if key not in {f.name for f in dataclasses.fields(HParams)}:
            raise UsageError(f"--hparams: unknown name {key!r}; valid names: {_names()}, preset")
        changes[key] = _coerce(key, value)
    return base.replace(**changes)


HPARAMS_FILE = "hparams.json"


def check_run_hparams(run_dir: str, hparams: HParams, write: bool = True) -> None:
    """A run directory remembers its hparams: the first run writes `run_dir/hparams.json`, later ones must match.

    Raises:
      UsageError: naming every field that differs (Magenta's "Assign requires shapes" crash, said plainly).
    """
    saved = load_run_hparams(run_dir)
    if saved is not None:
        if saved != hparams:
            diff = ", ".join(f"{k}: {getattr(saved, k)!r} in the run, {getattr(hparams, k)!r} now"
                             for k in saved.__dataclass_fields__ if getattr(saved, k) != getattr(hparams, k))
            raise UsageError(f"--hparams: {run_dir} was trained with different hparams ({diff})")
    elif write:
        path = os.path.join(run_dir, HPARAMS_FILE)
        os.makedirs(run_dir, exist_ok=True)
        with open(path + ".tmp", "w") as f:
            f.write(hparams.to_json())
        os.replace(path + ".tmp", path)


def load_run_hparams(run_dir: str) -> HParams | None:
    path = os.path.join(run_dir, HPARAMS_FILE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return HParams.from_json(f.read())
    except (OSError, ValueError, TypeError) as e:  # unreadable, not JSON, or not our fields
        raise UsageError(f"--run_dir: {path} is not a readable hparams file ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:80] if str(e) else ''})") from None
