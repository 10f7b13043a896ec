"""Collects the ROW lines the benchmark scripts print into one table, with the machine it ran on.

Prints the table and rewrites the "Latest run_all" sections of bench/RESULTS.md and README.md (between their
markers), so that the two never show different runs.
Usage: python bench/report.py LOG_DIR [--quick]     (run by bench/run_all)
"""

from __future__ import annotations

import datetime
import os
import pathlib
import platform
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS, README = ROOT / "bench" / "RESULTS.md", ROOT / "README.md"
START, END = "<!-- run_all:start -->", "<!-- run_all:end -->"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        cpu = re.search(r"model name\s*:\s*(.+)", pathlib.Path("/proc/cpuinfo").read_text()).group(1).strip()
    except (OSError, AttributeError):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    try:
        gpu = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        gpu = ""
    return f"{cpu}, {os.cpu_count()} CPUs, {mem:.0f} GiB, " + (gpu.splitlines()[0] if gpu else "no GPU")


def main() -> None:
    logs = pathlib.Path(sys.argv[1])
    rows = [line.split("|")[1:] for name in ("dataset", "train", "generate", "gpu")
            for line in (logs / f"{name}.txt").read_text().splitlines() if line.startswith("ROW|")]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    quick = " (`--quick`: fewer repeats and steps; not for the record)" if "--quick" in sys.argv else ""
    table = [f"`bench/run_all`{quick}, {when}, commit {commit}; machine: {machine()}.", "",
             "| measure | Magenta 2.1.4 | attnrnn | ratio | target |", "|---|---|---|---|---|"]
    table += ["| " + " | ".join(r) + " |" for r in rows]
    text = "\n".join(table)
    print("\n" + text)
    for path in (RESULTS, README):
        old = path.read_text()
        if START in old and END in old:
            path.write_text(old[:old.index(START) + len(START)] + "\n" + text + "\n" + old[old.index(END):])
        elif path == RESULTS:
            path.write_text(old.rstrip() + f"\n\n## Latest run_all\n\n{START}\n{text}\n{END}\n")


if __name__ == "__main__":
    main()
