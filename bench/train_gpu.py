"""Training throughput on a GPU (when the machine has one): our trainer, Magenta's default model, Nottingham.

Magenta 2.1.4 needs TensorFlow 2.12, whose GPU build is not what its venv installs, so this reports our side only:
real (non-padding) tokens/s at batch 128, [128, 128], after compilation, in float32 and with
--mixed_precision.

Usage (project venv, on a machine with a GPU; a few minutes):
    python bench/train_gpu.py [--steps 300]
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys

from train_vs_magenta import BIN, ENV, logged_tokens_per_s, nottingham_examples, scratch_dir


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    name = gpu_name()
    if name is None:
        print("no GPU (nvidia-smi found none): skipped")
        return
    tmp = scratch_dir("bench_gpu_")
    train_file, _ = nottingham_examples(tmp)
    for precision, extra in (("float32", []), ("mixed bfloat16", ["--mixed_precision"])):
        cmd = [str(BIN / "attention_rnn_train"), f"--run_dir={tmp}/run_{len(extra)}",
               f"--sequence_example_file={train_file}", "--hparams=preset=magenta_2017",
               f"--num_training_steps={args.steps}", "--summary_frequency=20", "--save_checkpoint_steps=100000"]
        r = subprocess.run(cmd + extra, capture_output=True, text=True, env=ENV)
        if r.returncode:
            sys.exit(f"failed: {' '.join(cmd + extra)}\n{r.stderr[-3000:]}")
        tokens = logged_tokens_per_s(r.stderr, after_step=60)
        print(f"{name}, {precision}: {tokens:,.0f} real tokens/s")
        print(f"ROW|training throughput on the GPU, {precision}, real tokens/s ({name.split('(')[0].strip()})|-|"
              f"{tokens:,.0f}|-|report")

if __name__ == "__main__":
    main()
