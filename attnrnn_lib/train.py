"""Training and evaluation: the compiled step, checkpoints, TensorBoard, and the device strategy.

Loss and metrics follow Magenta's definitions (SPEC §4.3): cross-entropy averaged over the valid (unpadded)
steps of a batch; accuracy over valid steps; event accuracy over steps whose label is not "no event" (36);
no-event accuracy over those whose label is. Checkpoints live in `run_dir/train`, eval summaries in `run_dir/eval`.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import shutil
import signal
import threading
import time

import keras
import tensorflow as tf
from tqdm.auto import tqdm

from attnrnn_lib import heatmap, input_pipeline
from attnrnn_lib.config import HParams, check_run_hparams
from attnrnn_lib.encoding import INPUT_SIZE, NO_EVENT_LABEL
from attnrnn_lib.errors import UsageError
from attnrnn_lib.model import AttentionRNN

log = logging.getLogger("attnrnn.train")
METRICS = ("loss", "metrics/perplexity", "metrics/accuracy", "metrics/event_accuracy",
           "metrics/no_event_accuracy", "metrics/loss_per_step", "metrics/perplexity_per_step")
_SUMS = ("ce", "steps", "correct", "events", "event_correct", "no_events", "no_event_correct")


@functools.cache
def get_strategy() -> tf.distribute.Strategy:
    """TPU if one is attached (Colab/Cloud), all GPUs if several, one GPU, else the CPU.

    One strategy per process, however often it is asked for: a second TPU initialisation wipes the TPU, and a
    second MirroredStrategy over the same devices reuses the first one's collective keys (its all-reduces then
    fail with a shape mismatch as soon as the two models differ).
    """
    if os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME"):
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")


def step_sums(logits, labels, lengths):
    """Per-batch sums from which every metric is derived: a dict of float32 scalars (see `_SUMS`)."""
    mask = tf.sequence_mask(lengths, tf.shape(labels)[1], tf.float32)             # [batch, T]
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)  # [batch, T]
    correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32) * mask
    no_event = tf.cast(tf.equal(labels, NO_EVENT_LABEL), tf.float32) * mask
    return {"ce": tf.reduce_sum(ce * mask), "steps": tf.reduce_sum(mask), "correct": tf.reduce_sum(correct),
            "events": tf.reduce_sum(mask - no_event), "event_correct": tf.reduce_sum(correct * (1 - no_event)),
            "no_events": tf.reduce_sum(no_event), "no_event_correct": tf.reduce_sum(correct * no_event)}


def clip_gradients(grads: list, hparams: HParams) -> list:
    """Magenta's clipping of the whole batch's gradient: each tensor to `clip_norm` (2017+, `tf.clip_by_norm`),
    or all of them together (2016, `tf.clip_by_global_norm`)."""
    if hparams.clip_mode == "per_tensor":
        return [tf.clip_by_norm(g, hparams.clip_norm) for g in grads]
    return tf.clip_by_global_norm(grads, hparams.clip_norm)[0]


def metrics_from_sums(s: dict) -> dict[str, float]:
    """Magenta's metric names and values from accumulated sums (NaN where a denominator is 0, as Magenta)."""
    div = lambda a, b: float(a) / float(b) if float(b) > 0 else float("nan")  # noqa: E731
    loss = div(s["ce"], s["steps"])
    ppl = math.exp(loss) if loss == loss and loss < 700 else float("inf")
    return {"loss": loss, "metrics/perplexity": ppl, "metrics/accuracy": div(s["correct"], s["steps"]),
            "metrics/event_accuracy": div(s["event_correct"], s["events"]),
            "metrics/no_event_accuracy": div(s["no_event_correct"], s["no_events"]),
            "metrics/loss_per_step": loss, "metrics/perplexity_per_step": ppl}


class Run:
    """A run directory: hparams checked against `run_dir/hparams.json`, model, optimizer and checkpoints."""

    def __init__(self, run_dir: str, hparams: HParams, seed: int = 0, keep_checkpoints: int = 10,
                 strategy: tf.distribute.Strategy | None = None, write_hparams: bool = True,
                 mixed_precision: bool = False):
        self.run_dir, self.hparams = run_dir, hparams
        self.train_dir, self.eval_dir = os.path.join(run_dir, "train"), os.path.join(run_dir, "eval")
        check_run_hparams(run_dir, hparams, write=write_hparams)
        self.strategy = strategy or get_strategy()
        with self.strategy.scope():
            keras.utils.set_random_seed(seed)
            self.model = AttentionRNN(hparams, mixed_precision=mixed_precision)  # see AttentionRNN
            schedule = keras.optimizers.schedules.ExponentialDecay(
                hparams.learning_rate, hparams.decay_steps, hparams.decay_rate, staircase=True)
            # TF1 AdamOptimizer defaults (Keras' epsilon is 1e-7). No clipnorm here: Keras would clip each
            # replica's share of the gradient, not the whole batch's (see `clip_gradients`).
            self.optimizer = keras.optimizers.Adam(schedule, beta_1=0.9, beta_2=0.999, epsilon=1e-8)
            self.optimizer.build(self.model.trainable_variables)
            self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.train_dir, max_to_keep=keep_checkpoints or None,
                                                  checkpoint_name="model.ckpt")

    @property
    def step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def restore(self, path: str | None = None) -> int:
        """Restores `path`, or else the newest readable checkpoint (if any); returns the global step.

        TensorFlow only lists a checkpoint once all its files are written, so a killed save is never seen;
        a listed checkpoint that has since been damaged (a bad disk, a copy cut short) is skipped with a
        warning in favour of the one before it.

        Raises:
          UsageError: `path` was given and cannot be read.
        """
        for candidate in [path] if path else reversed(self.manager.checkpoints):
            problem = checkpoint_problem(candidate)
            if problem is None:
                self.checkpoint.restore(candidate).expect_partial()
                break
            if path:
                raise UsageError(f"checkpoint {candidate} is unreadable: {problem}")
            log.warning("skipping checkpoint %s: unreadable (%s); trying the one before it", candidate, problem)
        return self.step


def checkpoint_problem(path: str) -> str | None:
    """Why the checkpoint at `path` cannot be restored (every tensor is read, so checksums are checked), or None."""
    try:
        reader = tf.train.load_checkpoint(path)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except Exception as e:  # the reader raises OpError, ValueError or IndexError for damaged files
        return (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
    return None


def _summaries(writer, step: int, values: dict, image: bytes | None = None):
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.scalar(name, value)
        if image is not None:
            tf.summary.image("attention/heatmap", tf.image.decode_png(image)[None])
    writer.flush()


def heatmap_png(model: AttentionRNN, example, title: str) -> bytes:
    """The attention heatmap of one fixed melody under the current weights (no dropout)."""
    inputs, labels, length = example
    _, attention = model(inputs[None, :length])
    return heatmap.figure_png(heatmap.attention_heatmap(attention[0].numpy(), title=title))


def _first_example(files):
    inputs, labels = next(iter(input_pipeline.load_examples(files).take(1)))
    length = min(int(tf.shape(labels)[0]), 128)
    return tf.cast(inputs, tf.float32), labels, length


def train(run: Run, files: list[str], num_steps: int | None = None, summary_frequency: int = 10,
          save_checkpoint_secs: float = 60.0, save_checkpoint_steps: int | None = None, seed: int = 0,
          heatmap_files: list[str] | None = None) -> dict[str, float]:
    """Trains until `num_steps` total steps (None = until interrupted); returns the last logged metrics.

    A restarted run resumes from its latest checkpoint and its step count. Every `summary_frequency` steps it
    logs and writes Magenta's scalars plus an attention heatmap of a fixed melody to `run_dir/train`.
    """
    hp, model, optimizer, strategy = run.hparams, run.model, run.optimizer, run.strategy
    start = run.restore()
    if start:
        log.info("resuming %s from step %d", run.train_dir, start)
    if num_steps is not None and start >= num_steps:
        log.info("already at step %d >= --num_training_steps=%d; nothing to do", start, num_steps)
        return {}
    # A resumed run draws a fresh shuffle (seed + step) rather than replaying the batches it began with.
    on_tpu = isinstance(strategy, tf.distribute.TPUStrategy)
    batches = strategy.experimental_distribute_dataset(input_pipeline.training_batches(
        files, hp.batch_size, seed + start,
        input_pipeline.BUCKET_LENGTHS if on_tpu else input_pipeline.TRAIN_BUCKET_LENGTHS))
    example = _first_example(heatmap_files or files)

    def replica_step(inputs, labels, lengths, step):
        context = tf.distribute.get_replica_context()
        with tf.GradientTape() as tape:
            logits, _ = model(inputs, training=True,
                              seed=tf.stack([tf.cast(seed, tf.int64), step + tf.cast(context.replica_id_in_sync_group, tf.int64)]))
            sums = step_sums(logits, labels, lengths)
            total_steps = context.all_reduce("sum", sums["steps"])
            loss = sums["ce"] / total_steps
        grads = tape.gradient(loss, model.trainable_variables)   # this replica's share of the batch's gradient
        # Clip the sum over replicas, as Magenta clips the whole batch's gradient. Keras' own clipnorm would clip
        # each share before summing them (N replicas could step up to N times as far), and Keras sums whatever
        # each replica passes it: so each passes 1/N of the clipped sum.
        grads = clip_gradients(context.all_reduce("sum", grads), hp)
        replicas = strategy.num_replicas_in_sync   # dividing by 1 is exact: one device's numbers are unchanged
        optimizer.apply_gradients(zip([g / replicas for g in grads], model.trainable_variables))
        return sums

    # One trace for every batch length (the time axis is None in the spec), not a retrace mid-run.
    @tf.function(input_signature=[batches.element_spec])
    def train_step(batch):
        step = tf.cast(optimizer.iterations, tf.int64)
        sums = strategy.run(replica_step, args=(*batch, step))
        return {k: strategy.reduce("sum", v, axis=None) for k, v in sums.items()}

    writer = tf.summary.create_file_writer(run.train_dir)
    last_save, window, window_start, metrics = time.time(), {k: 0.0 for k in _SUMS}, time.time(), {}
    n_window, examples = 0, 0
    if threading.current_thread() is threading.main_thread():  # `kill` stops a run like Ctrl-C: saved first
        signal.signal(signal.SIGTERM, _raise_interrupt)
    bar = tqdm(total=num_steps, initial=start, unit="step", desc="train", dynamic_ncols=True, disable=None)
    iterator = iter(batches)
    try:
        while num_steps is None or run.step < num_steps:
            sums = train_step(next(iterator))
            step = run.step
            if not math.isfinite(float(sums["ce"])):
                raise FloatingPointError(f"loss became {float(sums['ce'])} at step {step}; stopping")
            window = {k: window[k] + float(sums[k]) for k in _SUMS}
            n_window, examples = n_window + 1, examples + hp.batch_size
            bar.update(1)
            if step % summary_frequency == 0:
                elapsed = max(time.time() - window_start, 1e-9)
                metrics = metrics_from_sums(window)
                rates = {"global_step/sec": n_window / elapsed, "examples/sec": examples / elapsed,
                         "tokens/sec": window["steps"] / elapsed}
                _summaries(writer, step, {**metrics, **rates},
                           heatmap_png(model, example, f"attention at step {step}"))
                log.info("Global Step: %d, Loss: %.4f, Perplexity: %.3f, Accuracy: %.4f, %.2f steps/s, "
                         "%.0f examples/s, %.0f real tokens/s", step, metrics["loss"],
                         metrics["metrics/perplexity"], metrics["metrics/accuracy"], rates["global_step/sec"],
                         rates["examples/sec"], rates["tokens/sec"])
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", acc=f"{metrics['metrics/accuracy']:.3f}")
                window, window_start, n_window, examples = {k: 0.0 for k in _SUMS}, time.time(), 0, 0
            due = (save_checkpoint_steps and step % save_checkpoint_steps == 0) or \
                (not save_checkpoint_steps and time.time() - last_save >= save_checkpoint_secs)
            if due:
                save(run)
                last_save = time.time()
    finally:
        bar.close()
        if run.step > start and run.manager.latest_checkpoint != os.path.join(
                run.train_dir, f"model.ckpt-{run.step}"):
            try:
                save(run)
                log.info("saved %s", run.manager.latest_checkpoint)
            except OSError as e:   # keep whatever stopped the run as the error the user sees
                log.warning("could not save the final checkpoint: %s", e.strerror)
    return metrics


def save(run: Run) -> None:
    """Saves a checkpoint at the current step. TensorFlow writes it under `<name>_temp` and lists it only once
    complete; when the disk fills up, that temp directory is removed too.

    Raises:
      OSError: the save failed (its errno says why); the checkpoints saved before are untouched.
    """
    try:
        run.manager.save(checkpoint_number=run.step)
    except tf.errors.OpError as e:
        shutil.rmtree(os.path.join(run.train_dir, f"model.ckpt-{run.step}_temp"), ignore_errors=True)
        code = next((c for c, text in ((errno.ENOSPC, "No space left"), (errno.EFBIG, "File too large"),
                                       (errno.EDQUOT, "quota")) if text in e.message), errno.EIO)
        last = run.manager.latest_checkpoint
        raise OSError(code, f"{os.strerror(code)}: checkpoint {run.step} was not saved; "
                            f"{'the run resumes from ' + os.path.basename(last) if last else 'no checkpoint yet'}"
                      ) from None


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def evaluate(model: AttentionRNN, files: list[str], batch_size: int, dropout: bool = True,
             seed: int = 0) -> dict[str, float]:
    """Metrics over one pass of `files`, weighted by valid steps. `dropout=True` is Magenta's eval (SPEC §8.1)."""
    @tf.function(reduce_retracing=True)
    def eval_step(inputs, labels, lengths, i):
        # A bucket's last batch is short: padded with empty rows (they count for nothing) it runs on the same
        # compiled kernel as every other batch instead of compiling one for its size.
        short = batch_size - tf.shape(inputs)[0]
        inputs = tf.ensure_shape(tf.pad(inputs, [[0, short], [0, 0], [0, 0]]), [batch_size, None, INPUT_SIZE])
        labels, lengths = tf.pad(labels, [[0, short], [0, 0]]), tf.pad(lengths, [[0, short]])
        logits, _ = model(inputs, training=dropout, seed=tf.stack([tf.cast(seed, tf.int64), i]))
        return step_sums(logits, labels, lengths)

    total = {k: 0.0 for k in _SUMS}
    for i, (inputs, labels, lengths) in enumerate(input_pipeline.eval_batches(files, batch_size)):
        sums = eval_step(inputs, labels, lengths, tf.constant(i, tf.int64))
        total = {k: total[k] + float(sums[k]) for k in _SUMS}
    if total["steps"] == 0:
        raise UsageError(f"--sequence_example_file: {files[0]} has no examples to evaluate")
    return metrics_from_sums(total)


def evaluate_loop(run: Run, files: list[str], num_steps: int | None = None, timeout_secs: float = 300.0,
                  interval_secs: float = 10.0, dropout: bool = True) -> list[tuple[int, dict]]:
    """Magenta's eval job: evaluates each new checkpoint of `run_dir/train` once and writes `run_dir/eval`.

    Stops once a checkpoint at or past `num_steps` is evaluated, or after `timeout_secs` with no new checkpoint.
    """
    writer, results = tf.summary.create_file_writer(run.eval_dir), []
    example = _first_example(files)
    for path in tf.train.checkpoints_iterator(run.train_dir, min_interval_secs=interval_secs,
                                              timeout=timeout_secs):
        try:
            step = run.restore(path)
        except UsageError as e:
            log.warning("%s; not evaluated", e)
            continue
        metrics = evaluate(run.model, files, run.hparams.batch_size, dropout=dropout)
        _summaries(writer, step, metrics, heatmap_png(run.model, example, f"eval attention at step {step}"))
        log.info("Eval at step %d: loss %.4f, perplexity %.3f, accuracy %.4f, event accuracy %.4f", step,
                 metrics["loss"], metrics["metrics/perplexity"], metrics["metrics/accuracy"],
                 metrics["metrics/event_accuracy"])
        results.append((step, metrics))
        if num_steps is not None and step >= num_steps:
            break
    return results

