"""attention_rnn_train: train the attention RNN (or, with --eval, evaluate its checkpoints as they appear)."""

from __future__ import annotations

import logging
import sys

from attnrnn_lib.cli import common

log = logging.getLogger("attnrnn")


def build_parser() -> common.Parser:
    p = common.make_parser("attention_rnn_train", __doc__)
    common.add_magenta_config_flag(p)
    p.add_argument("--run_dir", required=True, help="checkpoints go to RUN_DIR/train, eval summaries to RUN_DIR/eval")
    p.add_argument("--sequence_example_file", default="",
                   help="SequenceExample TFRecord file or glob (default: the built-in folk-tune dataset)")
    p.add_argument("--hparams", default="", help="e.g. 'batch_size=64,rnn_layer_sizes=[64,64]' or a dict literal; "
                   "'preset=magenta_2017' picks a preset (magenta_2016 is the default)")
    p.add_argument("--num_training_steps", type=int, default=0,
                   help="stop at this global step (0 = train until stopped); a restarted run resumes")
    p.add_argument("--eval", action="store_true", help="evaluate new checkpoints of RUN_DIR/train instead")
    p.add_argument("--summary_frequency", type=common.positive_int("--summary_frequency"), default=10)
    p.add_argument("--save_checkpoint_secs", type=float, default=60.0)
    p.add_argument("--save_checkpoint_steps", type=int, default=0, help="save every N steps instead of by time")
    p.add_argument("--num_checkpoints", type=int, default=10, help="checkpoints kept (0 = all)")
    p.add_argument("--eval_timeout_secs", type=float, default=300.0,
                   help="--eval stops after this long without a new checkpoint (Magenta: 300)")
    p.add_argument("--eval_without_dropout", action="store_true",
                   help="evaluate with dropout off (Magenta evaluates with it on, keep 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of initial weights, shuffling and dropout")
    p.add_argument("--mixed_precision", action="store_true",
                   help="bfloat16 projections with float32 weights (GPU/TPU; CPUs with AVX512-BF16 or AMX)")
    return p


def main_args(args) -> int:
    from attnrnn_lib import outputs
    from attnrnn_lib.config import check_run_hparams, parse_hparams

    # Everything that can be wrong with the flags is checked before TensorFlow loads (seconds).
    hparams = parse_hparams(args.hparams)
    for flag, value, ok, rule in (
            ("--num_training_steps", args.num_training_steps, args.num_training_steps >= 0, ">= 0"),
            ("--save_checkpoint_steps", args.save_checkpoint_steps, args.save_checkpoint_steps >= 0, ">= 0"),
            ("--save_checkpoint_secs", args.save_checkpoint_secs, args.save_checkpoint_secs > 0, "> 0"),
            ("--num_checkpoints", args.num_checkpoints, args.num_checkpoints >= 0, ">= 0"),
            ("--eval_timeout_secs", args.eval_timeout_secs, args.eval_timeout_secs >= 0, ">= 0")):
        if not ok:  # `not ok` also catches nan
            raise common.UsageError(f"{flag}: must be {rule}, got {value}")
    outputs.ensure_dir(args.run_dir, "--run_dir", create=False)
    check_run_hparams(args.run_dir, hparams, write=False)
    if args.sequence_example_file:
        from attnrnn_lib.dataset import resolve_files

        resolve_files(args.sequence_example_file)
    from attnrnn_lib import heap

    heap.keep_freed_memory()   # before TensorFlow starts its threads, or it has no effect (heap.py)
    common.import_tensorflow_quietly()
    import tensorflow as tf

    from attnrnn_lib import corpus, input_pipeline, train

    if args.sequence_example_file:
        files = input_pipeline.resolve_files(args.sequence_example_file)
        heatmap_files = files
    else:
        train_file, eval_file = corpus.default_dataset()
        files = [eval_file if args.eval else train_file]
        heatmap_files = [eval_file]
        log.info("using the default dataset: %s", files[0])
    n_examples = input_pipeline.check_files(files)
    if n_examples == 0:
        raise common.UsageError(f"--sequence_example_file: {files[0]} has no examples")
    steps = args.num_training_steps or None
    run = train.Run(args.run_dir, hparams, seed=args.seed, keep_checkpoints=args.num_checkpoints,
                    write_hparams=not args.eval, mixed_precision=args.mixed_precision)
    if args.eval:
        train.evaluate_loop(run, files, steps, timeout_secs=args.eval_timeout_secs,
                            dropout=not args.eval_without_dropout)
    else:
        try:
            train.train(run, files, steps, args.summary_frequency, args.save_checkpoint_secs,
                        args.save_checkpoint_steps or None, args.seed, heatmap_files)
        except tf.errors.DataLossError as e:  # a record damaged past the first one, met mid-training
            raise common.UsageError(f"--sequence_example_file: corrupt record ({e.message.splitlines()[0][:120]}); "
                                    f"training stopped at step {run.step}, checkpoints are intact") from None
        except KeyboardInterrupt:
            log.info("stopped at step %d; the same command resumes from %s", run.step, run.manager.latest_checkpoint)
            return 130
    return 0


def main(argv=None) -> int:
    return common.run(main_args, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
