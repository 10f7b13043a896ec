"""Attention heatmaps: what each step of a melody attended to among its last attn_length steps.

Used by TensorBoard summaries during training, by `attention_rnn_generate --attention_png`, and the notebooks.
"""

from __future__ import annotations

import io
import os
import sys

import matplotlib

if "ipykernel" not in sys.modules and not os.environ.get("MPLBACKEND"):
    matplotlib.use("Agg")  # scripts and servers write files; inside Jupyter keep the inline backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from attnrnn_lib.encoding import NO_EVENT, NOTE_OFF  # noqa: E402

_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def event_name(event: int) -> str:
    """-2 -> '', -1 -> 'off', 60 -> 'C4'."""
    if event == NO_EVENT:
        return ""
    if event == NOTE_OFF:
        return "off"
    return f"{_NAMES[event % 12]}{event // 12 - 1}"


def to_absolute(attention: np.ndarray) -> np.ndarray:
    """[T, L] window-relative weights (slot L-1 = the previous step) -> [T, T] over absolute steps.

    Row t holds what step t read from steps t-L .. t-1; weight on empty slots (before the melody) is dropped.
    """
    steps, length = attention.shape
    out = np.zeros((steps, steps), np.float32)
    for t in range(steps):
        for slot in range(length):
            source = t - length + slot
            if source >= 0:
                out[t, source] = attention[t, slot]
    return out


def attention_heatmap(attention, events=None, title: str = "Attention", absolute: bool = True,
                      ax=None):
    """Draws attention weights as a heatmap and returns the Figure.

    Args:
      attention: [T, attn_length] weights of one melody (rows sum to 1).
      events: the melody's T events, to label the axes with note names (optional).
      title: the figure title.
      absolute: plot against absolute steps ([T, T], lower triangle, bar lines) instead of window slots.
      ax: an existing matplotlib Axes to draw into.
    """
    attention = np.asarray(attention, np.float32)
    data = to_absolute(attention) if absolute else attention
    if ax is None:
        size = min(12.0, 3.0 + data.shape[0] / 16)
        fig, ax = plt.subplots(figsize=(size, size * (0.85 if absolute else 0.5)), dpi=100)
    else:
        fig = ax.figure
    im = ax.imshow(data, aspect="auto", origin="upper", cmap="magma", interpolation="nearest",
                   vmin=0.0, vmax=max(float(data.max()), 1e-6))
    if absolute:  # bar lines every 16 steps (4/4 at 4 steps per quarter), the grid the model's inputs use
        for bar in range(16, data.shape[0], 16):
            ax.axvline(bar - 0.5, color="0.35", lw=0.5)
            ax.axhline(bar - 0.5, color="0.35", lw=0.5)
    ax.set_ylabel("step being predicted from")
    ax.set_xlabel("step attended to" if absolute else f"window slot ({attention.shape[1] - 1} = previous step)")
    ax.set_title(title)
    if events is not None and absolute:
        ticks = [t for t, e in enumerate(events) if e >= 0]
        if len(ticks) <= 48:
            labels = [event_name(int(events[t])) for t in ticks]
            ax.set_xticks(ticks, labels, rotation=90, fontsize=7)
            ax.set_yticks(ticks, labels, fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.04, label="attention weight")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    """A Figure rendered to PNG bytes (and closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()
