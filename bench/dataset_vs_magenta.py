"""MIDI -> SequenceExamples: attnrnn vs Magenta 2.1.4, same files, same machine, one run; prints the ratio.

Both pipelines run as their command-line tools (start-up included), on the whole Nottingham set, with
--eval_ratio=0 so both write every example to training_melodies.tfrecord; the examples are then compared
as multisets (Magenta writes in directory-listing order).

Usage (from the project root, in the project venv, after ../shared/magenta/setup.sh):
    python bench/dataset_vs_magenta.py [--sets melody,full] [--repeats 2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "nottingham"
MAGENTA = pathlib.Path(os.environ.get("MAGENTA_VENV", "/tmp/magenta_venv")) / "bin"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")


def timed(cmd: list[str]) -> float:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t


def ours(src: pathlib.Path, out: pathlib.Path) -> tuple[float, float]:
    bindir = pathlib.Path(sys.executable).parent
    a = timed([str(bindir / "convert_dir_to_note_sequences"), f"--input_dir={src}", f"--output_file={out}/ns.tfrecord",
               "--log=WARNING"])
    b = timed([str(bindir / "attention_rnn_create_dataset"), f"--input={out}/ns.tfrecord", f"--output_dir={out}/se",
               "--eval_ratio=0", "--log=WARNING"])
    return a, b


def magenta(src: pathlib.Path, out: pathlib.Path) -> tuple[float, float]:
    a = timed([str(MAGENTA / "convert_dir_to_note_sequences"), f"--input_dir={src}",
               f"--output_file={out}/ns.tfrecord", "--recursive", "--log=ERROR"])
    b = timed([str(MAGENTA / "melody_rnn_create_dataset"), "--config=attention_rnn", f"--input={out}/ns.tfrecord",
               f"--output_dir={out}/se", "--eval_ratio=0.0", "--log=ERROR"])
    return a, b


def example_digests(path: pathlib.Path) -> list[str]:
    """Order-free identity of each SequenceExample: a hash of its parsed inputs and labels."""
    import numpy as np
    import tensorflow as tf

    out = []
    for raw in tf.data.TFRecordDataset(str(path)):
        se = tf.train.SequenceExample.FromString(raw.numpy())
        fl = se.feature_lists.feature_list
        x = np.array([f.float_list.value for f in fl["inputs"].feature], np.float32)
        y = np.array([f.int64_list.value[0] for f in fl["labels"].feature], np.int64)
        out.append(hashlib.sha1(x.tobytes() + y.tobytes()).hexdigest())
    return sorted(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sets", default="melody,full")
    p.add_argument("--repeats", type=int, default=2, help="best of N for each side")
    args = p.parse_args()
    if not (MAGENTA / "melody_rnn_create_dataset").exists():
        sys.exit(f"Magenta not found in {MAGENTA.parent}: run ../shared/magenta/setup.sh (or set MAGENTA_VENV)")
    print(f"# {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} CPUs; best of {args.repeats} per side")
    print("| set | files | Magenta convert + create (s) | attnrnn convert + create (s) | ratio | examples | identical |")
    print("|---|---|---|---|---|---|---|")
    for name in args.sets.split(","):
        src = DATA / name
        files = len(list(src.glob("*.mid")))
        best_m = best_o = None
        for _ in range(args.repeats):  # alternate the two, so machine noise hits both alike
            with tempfile.TemporaryDirectory() as tm, tempfile.TemporaryDirectory() as to:
                m = magenta(src, pathlib.Path(tm))
                o = ours(src, pathlib.Path(to))
                if best_m is None or sum(m) < sum(best_m):
                    best_m = m
                if best_o is None or sum(o) < sum(best_o):
                    best_o = o
                dm = example_digests(pathlib.Path(tm) / "se" / "training_melodies.tfrecord")
                do = example_digests(pathlib.Path(to) / "se" / "training_melodies.tfrecord")
        same = dm == do
        print(f"| {name} | {files} | {best_m[0]:.1f} + {best_m[1]:.1f} = {sum(best_m):.1f} | "
              f"{best_o[0]:.2f} + {best_o[1]:.2f} = {sum(best_o):.2f} | **{sum(best_m) / sum(best_o):.1f}x** | "
              f"{len(dm)} vs {len(do)} | {'yes' if same else 'NO'} |", flush=True)
        print(f"ROW|dataset creation, nottingham/{name} ({files} files, convert + create)|{sum(best_m):.1f} s|"
              f"{sum(best_o):.2f} s|{sum(best_m) / sum(best_o):.1f}x faster|>= 20x; examples identical: "
              f"{'yes' if same else 'NO'}", flush=True)
        if not same:
            sys.exit("the examples differ from Magenta's")


if __name__ == "__main__":
    main()
