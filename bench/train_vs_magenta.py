"""Training: attnrnn vs Magenta 2.1.4, same data, same hparams, same machine, one run; prints ratios.

Data: the Nottingham melodies through our pipeline (Magenta reads the same files; the examples are identical,
see bench/dataset_vs_magenta.py), 25 % eval so that Magenta's eval set holds at least one batch of 128.
Model: Magenta's default attention_rnn (batch 128, [128, 128], attention on layer 1, keep 0.5, Adam 1e-3,
per-tensor clip 3) = our preset magenta_2017.

Measures:
  throughput   real (non-padding) tokens/s after warm-up. Magenta's: steps/s x 128 x mean example length (its
               batches are random draws of the file, padded to their longest); ours: logged by the trainer.
  memory       peak RSS of each whole training command (GNU time).
  quality/time wall time from start until a checkpoint reaches the eval loss Magenta has after its run
               (both evaluated Magenta's way: dropout on, mean cross-entropy over valid steps).

Usage (project venv, after ../shared/magenta/setup.sh; about 10 minutes on 2 cores):
    python bench/train_vs_magenta.py [--magenta_steps 26] [--our_steps 80]
"""

from __future__ import annotations

import argparse
import atexit
import glob
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nottingham" / "melody"
MAGENTA = pathlib.Path(os.environ.get("MAGENTA_VENV", "/tmp/magenta_venv")) / "bin"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
BIN = pathlib.Path(sys.executable).parent


def run_timed(cmd: list[str], log: pathlib.Path) -> tuple[float, float]:
    """Runs cmd under GNU time; returns (wall s, peak RSS MiB); output goes to `log`."""
    tfile = log.with_suffix(".time")
    t = time.time()
    with open(log, "w") as f:
        r = subprocess.run(["/usr/bin/time", "-v", "-o", str(tfile)] + cmd, stdout=f, stderr=subprocess.STDOUT,
                           env=ENV)
    if r.returncode:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", tfile.read_text()).group(1)) / 1024
    return time.time() - t, rss


def scratch_dir(prefix: str) -> pathlib.Path:
    """A new temp folder, removed when the script exits (data and checkpoints: 220 MB a training run)."""
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return tmp


def nottingham_examples(tmp: pathlib.Path) -> tuple[str, str]:
    """The Nottingham melodies through our two data commands (25 % eval, seed 0): (training, eval) files."""
    subprocess.run([str(BIN / "convert_dir_to_note_sequences"), f"--input_dir={DATA}",
                    f"--output_file={tmp}/ns.tfrecord", "--log=WARNING"], check=True, env=ENV)
    subprocess.run([str(BIN / "attention_rnn_create_dataset"), f"--input={tmp}/ns.tfrecord",
                    f"--output_dir={tmp}/se", "--eval_ratio=0.25", "--seed=0", "--log=WARNING"], check=True, env=ENV)
    return f"{tmp}/se/training_melodies.tfrecord", f"{tmp}/se/eval_melodies.tfrecord"


def logged_tokens_per_s(log_text: str, after_step: int = 20) -> float:
    """Mean of the trainer's logged real tokens/s over the reports after `after_step` (compilation excluded)."""
    tokens = [float(t) for s, t in re.findall(r"Global Step: (\d+),.*?, ([\d.]+) real tokens/s", log_text)
              if int(s) > after_step]
    return sum(tokens) / len(tokens)


def mean_length(path: str) -> float:
    import tensorflow as tf

    from attnrnn_lib import input_pipeline

    lengths = [int(tf.shape(y)[0]) for _, y in input_pipeline.load_examples([path])]
    return sum(lengths) / len(lengths)


def scalar_events(directory: str, tag: str) -> list[tuple[int, float]]:
    import tensorflow as tf

    out = []
    for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
        for e in tf.compat.v1.train.summary_iterator(path):
            for v in e.summary.value:
                if v.tag == tag:
                    out.append((e.step, float(tf.make_ndarray(v.tensor)) if v.HasField("tensor") else v.simple_value))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--magenta_steps", type=int, default=26)
    ap.add_argument("--our_steps", type=int, default=80)
    args = ap.parse_args()
    if args.magenta_steps < 11:     # Magenta reports at steps 1, 6, 11, ...; its first 6 are warm-up
        ap.error("--magenta_steps must be at least 11 (Magenta's speed is read from its reports after step 6)")
    tmp = scratch_dir("bench_train_")
    train_file, eval_file = nottingham_examples(tmp)
    avg = mean_length(train_file)
    print(f"# data: Nottingham melodies, {train_file.split('/')[-1]} mean length {avg:.1f} steps; {os.cpu_count()} CPUs")

    # --- Magenta
    cmd = [str(MAGENTA / "melody_rnn_train"), "--config=attention_rnn", f"--run_dir={tmp}/magenta",
           f"--sequence_example_file={train_file}", f"--num_training_steps={args.magenta_steps}",
           "--summary_frequency=5"]
    print("$ " + " ".join(cmd).replace(str(tmp), "$TMP").replace(str(MAGENTA), "$MAGENTA_VENV/bin"), flush=True)
    m_wall, m_rss = run_timed(cmd, tmp / "magenta_train.log")
    # Magenta logs each report twice (tf.logging and absl); count the INFO:tensorflow lines only.
    rows = [(int(a), float(b)) for a, b in re.findall(
        r"^INFO:tensorflow:Accuracy = .*?Global Step = (\d+),.*\(([\d.]+) sec\)",
        (tmp / "magenta_train.log").read_text(), re.M)]
    timed = [(s, d) for s, d in rows if s > 6]                 # after Magenta's 6-step warm-up (bench.sh)
    m_steps_per_s = (timed[-1][0] - 6) / sum(d for _, d in timed)
    m_tokens = m_steps_per_s * 128 * avg
    subprocess.run([str(MAGENTA / "melody_rnn_train"), "--config=attention_rnn", f"--run_dir={tmp}/magenta",
                    f"--sequence_example_file={eval_file}", f"--num_training_steps={args.magenta_steps}", "--eval"],
                   check=True, env=ENV, capture_output=True)
    m_eval = scalar_events(f"{tmp}/magenta/eval", "loss")[-1][1]
    print(f"magenta: {m_steps_per_s:.3f} steps/s = {m_tokens:,.0f} real tokens/s; peak RSS {m_rss:,.0f} MiB; "
          f"{args.magenta_steps} steps in {m_wall:.0f} s wall; eval loss {m_eval:.4f}", flush=True)

    # --- ours
    cmd = [str(BIN / "attention_rnn_train"), f"--run_dir={tmp}/ours", f"--sequence_example_file={train_file}",
           "--hparams=preset=magenta_2017", f"--num_training_steps={args.our_steps}", "--summary_frequency=10",
           "--save_checkpoint_steps=5", "--num_checkpoints=0"]
    print("$ " + " ".join(cmd).replace(str(tmp), "$TMP").replace(str(BIN) + "/", ""), flush=True)
    start = time.time()
    o_wall, o_rss = run_timed(cmd, tmp / "ours_train.log")
    o_tokens = logged_tokens_per_s((tmp / "ours_train.log").read_text())
    # Time to Magenta's eval loss: evaluate our checkpoints in order, Magenta's way (dropout on).
    from attnrnn_lib import train
    from attnrnn_lib.config import PRESETS

    run = train.Run(f"{tmp}/ours", PRESETS["magenta_2017"], write_hparams=False)
    reached = None
    for index in sorted(glob.glob(f"{tmp}/ours/train/model.ckpt-*.index"), key=lambda p: int(p.split("-")[-1][:-6])):
        step = run.restore(index[:-6])
        loss = train.evaluate(run.model, [eval_file], 128, dropout=True)["loss"]
        if loss <= m_eval:
            reached = (step, os.path.getmtime(index) - start, loss)
            break
    print(f"ours:    {o_tokens:,.0f} real tokens/s (steps > 20); peak RSS {o_rss:,.0f} MiB; {args.our_steps} steps "
          f"in {o_wall:.0f} s wall")
    print(f"RATIO throughput (real tokens/s) ours/magenta = {o_tokens / m_tokens:.2f}x")
    print(f"RATIO peak RSS ours/magenta = {o_rss / m_rss:.2f} (target <= 0.33)")
    print(f"ROW|training throughput, real tokens/s (batch 128, [128,128])|{m_tokens:,.0f}|{o_tokens:,.0f}|"
          f"{o_tokens / m_tokens:.2f}x|>= 5x")
    print(f"ROW|training peak RSS|{m_rss:,.0f} MiB|{o_rss:,.0f} MiB|{o_rss / m_rss:.2f}|<= 0.33")
    print(f"ROW|wall time to Magenta's eval loss after {args.magenta_steps} steps ({m_eval:.3f})|{m_wall:.0f} s|" +
          (f"{reached[1]:.0f} s (step {reached[0]})|{m_wall / reached[1]:.1f}x sooner|report" if reached
           else f"not reached in {args.our_steps} steps|-|report"))
    if reached:
        print(f"eval loss {m_eval:.4f} (Magenta after {args.magenta_steps} steps, {m_wall:.0f} s): ours at step "
              f"{reached[0]}, {reached[1]:.0f} s after start (loss {reached[2]:.4f}) -> {m_wall / reached[1]:.2f}x "
              "sooner")
    else:
        print(f"eval loss {m_eval:.4f}: not reached by our {args.our_steps} steps")


if __name__ == "__main__":
    main()
