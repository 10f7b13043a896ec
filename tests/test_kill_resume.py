"""Training killed with SIGKILL at random moments, then the same command again, several times over.

Each restart must resume from the last complete checkpoint (never a partial or damaged one) and lose at most
one save interval of steps; the run must then finish normally.
"""

import random
import re
import signal
import subprocess
import sys
import time

import tensorflow as tf

SAVE_EVERY = 3
FINAL_STEP = 30


def _command(run_dir, train_file):
    return [sys.executable, "-m", "attnrnn_lib.cli.train", f"--run_dir={run_dir}", "--hparams=preset=ci",
            f"--sequence_example_file={train_file}", f"--save_checkpoint_steps={SAVE_EVERY}",
            "--summary_frequency=1", "--seed=3", f"--num_training_steps={FINAL_STEP}"]


def _complete_checkpoints(train_dir):
    state = tf.train.get_checkpoint_state(str(train_dir))
    return [int(p.rsplit("-", 1)[1]) for p in state.all_model_checkpoint_paths] if state else []


def _logged_steps(text):
    return [int(s) for s in re.findall(r"Global Step: (\d+)", text)]


def _run_until_killed(cmd, log_path, kill_after_step, delay):
    """Starts `cmd` and kills it `delay` s after it logs step `kill_after_step`; returns (log, last logged step)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and \
                    max(_logged_steps(log_path.read_text()), default=0) < kill_after_step:
                time.sleep(0.02)
            time.sleep(delay)   # lands anywhere: mid-step, mid-summary, mid-save
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    text = log_path.read_text()
    return text, max(_logged_steps(text), default=None)


def test_repeated_sigkill_resumes_from_last_complete_checkpoint(tmp_path, nottingham_examples):
    cmd = _command(tmp_path / "run", nottingham_examples[0])
    train_dir = tmp_path / "run" / "train"
    rng = random.Random(7)
    start = 0
    for attempt in range(3):
        damaged = attempt == 2
        if damaged:
            # Damage the newest listed checkpoint as a bad disk would: the restart must skip it.
            saved = sorted(_complete_checkpoints(train_dir))
            data = train_dir / f"model.ckpt-{saved[-1]}.data-00000-of-00001"
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
            start = saved[-2]
        text, last_logged = _run_until_killed(cmd, tmp_path / f"attempt{attempt}.log",
                                              start + rng.randint(SAVE_EVERY + 1, 3 * SAVE_EVERY),
                                              rng.uniform(0.0, 0.4))
        if start:
            assert f"resuming {train_dir} from step {start}" in text, text[-2000:]
        else:
            assert "resuming" not in text
        assert ("skipping checkpoint" in text) == damaged, text[-2000:]
        assert last_logged is not None and last_logged < FINAL_STEP, text[-2000:]
        saved = _complete_checkpoints(train_dir)
        assert saved and all(s % SAVE_EVERY == 0 for s in saved), saved
        assert last_logged - max(saved) <= SAVE_EVERY, (last_logged, saved)   # at most one save interval lost
        start = max(saved)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"resuming {train_dir} from step {start}" in r.stderr
    assert max(_complete_checkpoints(train_dir)) == FINAL_STEP
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "nothing to do" in again.stderr
