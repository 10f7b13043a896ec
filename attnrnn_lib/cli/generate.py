"""attention_rnn_generate: compose melodies with a trained model and write MIDI (plus heatmaps and audio)."""

from __future__ import annotations

import logging
import os
import time

from attnrnn_lib import outputs
from attnrnn_lib.cli import common

log = logging.getLogger("attnrnn")


def build_parser() -> common.Parser:
    p = common.make_parser("attention_rnn_generate", __doc__)
    common.add_magenta_config_flag(p)
    pos = common.positive_int
    p.add_argument("--bundle_file", default="", help=".mag bundle (ours or Magenta's); default: the shipped model")
    p.add_argument("--run_dir", default="", help="use the latest checkpoint in RUN_DIR/train instead of a bundle")
    p.add_argument("--save_generator_bundle", action="store_true",
                   help="with --run_dir: write --bundle_file from the latest checkpoint and stop")
    p.add_argument("--bundle_description", default="", help="text stored in a saved bundle")
    p.add_argument("--hparams", default="", help="optional; must agree with the model's own hparams")
    p.add_argument("--output_dir", default="generated", help="where the MIDI files go (created)")
    p.add_argument("--num_outputs", type=pos("--num_outputs"), default=10)
    p.add_argument("--num_steps", type=pos("--num_steps"), default=128, help="16th-note steps, primer included")
    p.add_argument("--primer_melody", default="", help='e.g. "[60, -2, 60, -2, 67, -2, 67, -2]"')
    p.add_argument("--primer_midi", default="", help="a MIDI file whose melody primes the model")
    p.add_argument("--temperature", type=float, default=1.0, help="> 1 more random, < 1 more conservative")
    p.add_argument("--beam_size", type=pos("--beam_size"), default=1)
    p.add_argument("--branch_factor", type=pos("--branch_factor"), default=1)
    p.add_argument("--steps_per_iteration", type=pos("--steps_per_iteration"), default=1)
    p.add_argument("--qpm", type=float, default=None, help="tempo (default 120, or the primer MIDI's)")
    p.add_argument("--seed", type=int, default=0, help="same seed, model and flags -> identical files")
    p.add_argument("--start", default="magenta", choices=["magenta", "next_step"],
                   help="magenta: start 2 steps after the primer's last note ends (Magenta's timing, default); "
                        "next_step: right after it")
    p.add_argument("--attention_png", action="store_true", help="also write an attention heatmap per melody")
    p.add_argument("--wav", action="store_true", help="also write audio per melody")
    return p


def _check_flags(args):
    if args.bundle_file and args.run_dir and not args.save_generator_bundle:
        raise common.UsageError("--bundle_file and --run_dir: give one model, not both")
    if args.save_generator_bundle and not (args.run_dir and args.bundle_file):
        raise common.UsageError("--save_generator_bundle: needs --run_dir (the model) and --bundle_file (the output)")
    if args.save_generator_bundle and os.path.exists(args.bundle_file):
        raise common.UsageError(f"--bundle_file: {args.bundle_file} already exists (remove it or choose another name)")
    if args.primer_melody and args.primer_midi:
        raise common.UsageError("--primer_melody and --primer_midi: give at most one primer")
    if not args.temperature > 0:
        raise common.UsageError(f"--temperature: must be > 0, got {args.temperature}")
    if args.qpm is not None and not args.qpm > 0:
        raise common.UsageError(f"--qpm: must be > 0, got {args.qpm}")


def _check_hparams(text, hparams, source):
    from attnrnn_lib.config import parse_hparams

    if not text:
        return
    wanted = parse_hparams(text, base=hparams)
    diff = [f"{k}={getattr(wanted, k)!r} but the model has {getattr(hparams, k)!r}"
            for k in ("rnn_layer_sizes", "attn_length", "layout") if getattr(wanted, k) != getattr(hparams, k)]
    if diff:
        raise common.UsageError(f"--hparams: {'; '.join(diff)} ({source}); leave --hparams out, the model knows")


def _load_model(args):
    """(model, description of where it came from), checking --hparams against the model's own."""
    from attnrnn_lib import bundle, config

    if args.run_dir:
        hparams = config.load_run_hparams(args.run_dir)
        if hparams is None:
            raise common.UsageError(f"--run_dir: {args.run_dir} has no hparams.json (not a training run)")
        _check_hparams(args.hparams, hparams, f"{args.run_dir} was trained so")
        common.import_tensorflow_quietly()
        from attnrnn_lib import train

        run = train.Run(args.run_dir, hparams, write_hparams=False)
        if not run.manager.latest_checkpoint:
            raise common.UsageError(f"--run_dir: no checkpoint in {run.train_dir}")
        step = run.restore()
        return run.model, f"{run.manager.latest_checkpoint} (step {step})"
    path = args.bundle_file or str(bundle.PRETRAINED)
    if not args.bundle_file and not bundle.PRETRAINED.exists():
        raise common.UsageError(f"--bundle_file: the shipped model {bundle.PRETRAINED} is missing; pass --bundle_file")
    common.import_tensorflow_quietly()
    b = bundle.read_bundle(path)
    _check_hparams(args.hparams, b.hparams, f"the bundle says so")
    return bundle.build_model(b), f"{path} ({b.source} bundle, {list(b.hparams.rnn_layer_sizes)}, {b.hparams.layout})"


def main_args(args) -> int:
    from attnrnn_lib import melody_io

    _check_flags(args)
    primer, qpm = None, args.qpm or 120.0
    if args.primer_melody:
        primer = melody_io.parse_primer_melody(args.primer_melody)
    elif args.primer_midi:
        primer, midi_qpm = melody_io.primer_from_midi(args.primer_midi)
        qpm = midi_qpm or qpm               # Magenta: the primer's tempo wins over --qpm
    if not args.save_generator_bundle:   # a primer too long for --num_steps fails before the model loads
        import numpy as np

        outputs.ensure_dir(args.output_dir, create=False)

        melody_io.prepare_primer(primer, args.num_steps, args.start, np.random.default_rng(args.seed))
    t0 = time.perf_counter()
    model, source = _load_model(args)
    if args.save_generator_bundle:
        from attnrnn_lib import bundle

        bundle.save_bundle(model, args.bundle_file, args.bundle_description)
        log.info("wrote bundle %s from %s", args.bundle_file, source)
        return 0
    from attnrnn_lib import generate

    stamp = time.strftime("%Y-%m-%d_%H%M%S")
    width = len(str(args.num_outputs))
    outputs.ensure_dir(args.output_dir)
    stems = [os.path.join(args.output_dir, f"{stamp}_{i:0{width}d}") for i in range(1, args.num_outputs + 1)]
    suffixes = [".mid"] + [".png"] * args.attention_png + [".wav"] * args.wav
    existing = [s + x for s in stems for x in suffixes if os.path.exists(s + x)]
    if existing:
        raise common.UsageError(f"--output_dir: {existing[0]} already exists; not overwriting it")
    log.info("model: %s", source)
    t1 = time.perf_counter()
    melodies = generate.generate(model, primer, args.num_steps, args.num_outputs, args.temperature,
                                 args.beam_size, args.branch_factor, args.steps_per_iteration, args.seed, args.start)
    t2 = time.perf_counter()
    files = {}
    for stem, mel in zip(stems, melodies):
        pm = melody_io.to_pretty_midi(mel.events, qpm)
        files[stem + ".mid"] = melody_io.midi_bytes(pm)
        if args.attention_png:
            from attnrnn_lib import heatmap  # matplotlib only when a picture is asked for

            fig = heatmap.attention_heatmap(mel.attention, mel.events[:len(mel.attention)],
                                            title=f"What the model attended to: {os.path.basename(stem)}")
            files[stem + ".png"] = heatmap.figure_png(fig)
        if args.wav:
            files[stem + ".wav"] = melody_io.wav_bytes(melody_io.render_audio(pm))
    melody_io.write_new_files(files)   # all of them or, if the disk fills up, none
    log.info("generated %d melodies x %d steps in %.2f s (model load %.2f s); wrote %s_*%s", len(melodies),
             args.num_steps, t2 - t1, t1 - t0, stems[0][:-width - 1], "/".join(suffixes))
    return 0


def main(argv=None) -> int:
    return common.run(main_args, build_parser(), argv)


def console() -> None:
    """The `attention_rnn_generate` command: `main`, then a quick exit (every file is written and closed)."""
    common.exit_now(main())


if __name__ == "__main__":
    console()
