"""A full disk mid-write: every command stops with one clear line and leaves no half-written output.

The disk is filled for real, from the kernel's side: each command runs under RLIMIT_FSIZE, so any write that
would take a file past the limit fails with EFBIG, exactly where a full disk fails with ENOSPC.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_cli
from tests.test_parallel import pid_is_running

_LIMITED = ("import resource, signal, subprocess, sys; limit = int(sys.argv[1]); "
            "r = subprocess.run(sys.argv[2:], preexec_fn=lambda: (signal.signal(signal.SIGXFSZ, signal.SIG_IGN), "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))); sys.exit(r.returncode)")


def limited(max_file_bytes: int) -> list[str]:
    """An interpreter command whose process (and its workers) cannot write a file beyond `max_file_bytes`."""
    return [sys.executable, "-c", _LIMITED, str(max_file_bytes), sys.executable]


def files_under(root):
    return sorted(os.path.relpath(os.path.join(p, n), root) for p, _, names in os.walk(root) for n in names)


def assert_failed_cleanly(r, *words):
    lines = r.stderr.strip().splitlines()
    errors = [ln for ln in lines if ln.startswith("error")]
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and len(errors) == 1 and lines[-1] == errors[0], r.stderr[-3000:]
    assert all(w in errors[0] for w in ("writing failed: File too large", *words)), errors[0]


@pytest.fixture(scope="module")
def note_sequences(tmp_path_factory, nottingham_melody):
    from attnrnn_lib import midi_io

    out = tmp_path_factory.mktemp("ns") / "ns.tfrecord"
    midi_io.convert_directory(str(nottingham_melody), str(out), num_workers=2)
    return out


def test_convert_leaves_no_partial_tfrecord(tmp_path, nottingham_melody):
    r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={nottingham_melody}",
                f"--output_file={tmp_path / 'ns.tfrecord'}", python=limited(100_000))
    assert_failed_cleanly(r)
    assert files_under(tmp_path) == []


def test_create_dataset_leaves_neither_file(tmp_path, note_sequences):
    r = run_cli("attnrnn_lib.cli.create_dataset", f"--input={note_sequences}", f"--output_dir={tmp_path / 'ds'}",
                python=limited(1_000_000))
    assert_failed_cleanly(r)
    assert files_under(tmp_path) == []       # not even the eval file, which is small enough to fit


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children"),
                    reason="needs Linux's /proc/PID/task/TID/children to find the worker processes")
def test_a_worker_killed_mid_conversion_fails_the_command_cleanly(tmp_path, nottingham_melody):
    """As the out-of-memory killer would: one of the command's worker processes gets SIGKILL mid-run."""
    cmd = [sys.executable, "-m", "attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={nottingham_melody}",
           f"--output_file={tmp_path / 'ns.tfrecord'}", "--num_workers=2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONWARNINGS="ignore"))
    deadline = time.monotonic() + 120
    while not _children(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    workers = _children(proc.pid)
    assert workers, "the command ended before it started its workers"
    os.kill(workers[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    lines = stderr.strip().splitlines()
    assert proc.returncode == 1, stderr[-3000:]
    assert "Traceback" not in stderr and lines[-1].startswith("error: a worker process was killed by SIGKILL"), \
        stderr[-3000:]
    assert files_under(tmp_path) == []
    assert not any(pid_is_running(p) for p in workers)


def test_generate_writes_all_files_or_none(tmp_path):
    flags = ["--num_outputs=3", "--num_steps=64", "--wav", "--attention_png", f"--output_dir={tmp_path}"]
    r = run_cli("attnrnn_lib.cli.generate", *flags, python=limited(100_000))   # MIDI and PNG fit, WAV not
    assert_failed_cleanly(r)
    assert files_under(tmp_path) == []
    ok = run_cli("attnrnn_lib.cli.generate", *flags)
    assert ok.returncode == 0 and len(files_under(tmp_path)) == 9, ok.stderr[-2000:]


def test_training_that_cannot_save_stops_with_its_checkpoints_intact(tmp_path, nottingham_examples):
    flags = [f"--run_dir={tmp_path}", "--hparams=preset=ci", f"--sequence_example_file={nottingham_examples[0]}",
             "--save_checkpoint_steps=5", "--summary_frequency=5", "--num_training_steps=10"]
    r = run_cli("attnrnn_lib.cli.train", *flags, python=limited(60_000))   # the first checkpoint is larger
    assert_failed_cleanly(r, "checkpoint 5 was not saved; no checkpoint yet")
    assert not [f for f in files_under(tmp_path) if "model.ckpt" in f or f == "train/checkpoint"]
    ok = run_cli("attnrnn_lib.cli.train", *flags)      # room again: the same command trains from the start
    assert ok.returncode == 0 and "resuming" not in ok.stderr, ok.stderr[-2000:]
    assert "train/model.ckpt-10.index" in files_under(tmp_path)
