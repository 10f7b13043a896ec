"""Every command, every kind of bad flag: exactly one clear line naming the flag, exit code 2, nothing written."""

import concurrent.futures
import os

import pytest

from attnrnn_lib import dataset, midi_io
from tests.conftest import run_cli, shared

CONVERT = "attnrnn_lib.cli.convert_dir_to_note_sequences"
CREATE = "attnrnn_lib.cli.create_dataset"
TRAIN = "attnrnn_lib.cli.train"
GENERATE = "attnrnn_lib.cli.generate"


@pytest.fixture(scope="module")
def world(tmp_path_factory, nottingham_melody, nottingham_examples):
    """Real inputs plus the traps: a file where a directory should be, a run without checkpoints, non-MIDI."""
    w = tmp_path_factory.mktemp("world")
    midi_dir = w / "midi"
    midi_dir.mkdir()
    for f in sorted(nottingham_melody.glob("*.mid"))[:3]:
        (midi_dir / f.name).write_bytes(f.read_bytes())
    midi_io.convert_directory(str(midi_dir), str(w / "ns.tfrecord"), num_workers=1)
    (w / "a_file").write_text("I am a file, not a directory")
    (w / "noise.mid").write_bytes(os.urandom(500))
    (w / "noise.tfrecord").write_bytes(os.urandom(500))
    (w / "empty_run").mkdir()
    (w / "empty_run" / "hparams.json").write_text('{"attn_length": 8, "batch_size": 8, "rnn_layer_sizes": [16, 16]}')
    return {"dir": w, "midi_dir": midi_dir, "ns": w / "ns.tfrecord", "train": nottingham_examples[0],
            "eval": nottingham_examples[1], "bundle": shared("bundles", "alexandrejup_attention_rnn.mag")}


def cases(w):
    """(command, flags, words the one error line must contain). Outputs all go under w['dir'] / 'out*'."""
    d, out = w["dir"], w["dir"] / "out"
    under_a_file = d / "a_file" / "sub"
    gen = [f"--bundle_file={w['bundle']}", f"--output_dir={out}"]
    train = [f"--run_dir={out}", f"--sequence_example_file={w['train']}", "--hparams=preset=ci"]
    return [
        (CONVERT, [f"--input_dir={d / 'missing'}", f"--output_file={out}.tfrecord"], "--input_dir: not a directory"),
        (CONVERT, [f"--input_dir={d / 'a_file'}", f"--output_file={out}.tfrecord"], "--input_dir: not a directory"),
        (CONVERT, [f"--input_dir={w['midi_dir']}", f"--output_file={w['ns']}"], "already exists"),
        (CONVERT, [f"--input_dir={w['midi_dir']}", f"--output_file={under_a_file}"], "--output_file"),
        (CONVERT, [f"--input_dir={w['midi_dir']}", f"--output_file={d}"], "is a directory"),
        (CONVERT, [f"--input_dir={w['midi_dir']}", f"--output_file={out}.tfrecord", "--num_workers=-1"],
         "--num_workers"),
        (CONVERT, [f"--input_dir={w['midi_dir']}"], "--output_file"),
        (CONVERT, ["--music21_corpus=nosuch", f"--output_file={out}.tfrecord"], "unknown corpus nosuch"),
        (CONVERT, [f"--input_dir={w['midi_dir']}", f"--output_file={out}.tfrecord", "--bogus=1"], "--bogus"),
        (CREATE, [f"--input={d / 'missing.tfrecord'}", f"--output_dir={out}"], "--input: no such file"),
        (CREATE, [f"--input={d / 'noise.tfrecord'}", f"--output_dir={out}"],
         "--input"),
        (CREATE, [f"--input={w['train']}", f"--output_dir={out}"], "not NoteSequences"),
        (CREATE, [f"--input={w['ns']}", f"--output_dir={under_a_file}"], "--output_dir"),
        (CREATE, [f"--input={w['ns']}", f"--output_dir={out}", "--eval_ratio=-0.1"], "--eval_ratio"),
        (CREATE, [f"--input={w['ns']}", f"--output_dir={out}", "--eval_ratio=abc"], "--eval_ratio"),
        (CREATE, [f"--input={w['ns']}", f"--output_dir={out}", "--num_workers=0"], "--num_workers"),
        (TRAIN, [*train, "--num_training_steps=-5"], "--num_training_steps"),
        (TRAIN, [*train, "--save_checkpoint_steps=-1"], "--save_checkpoint_steps"),
        (TRAIN, [*train, "--save_checkpoint_secs=0"], "--save_checkpoint_secs"),
        (TRAIN, [*train, "--num_checkpoints=-2"], "--num_checkpoints"),
        (TRAIN, [*train, "--eval_timeout_secs=-1"], "--eval_timeout_secs"),
        (TRAIN, [*train, "--summary_frequency=0"], "--summary_frequency"),
        (TRAIN, [*train, "--hparams=batch_size=0"], "--hparams"),
        (TRAIN, [*train, "--hparams={'rnn_layer_sizes': [64, -1]}"], "--hparams"),
        (TRAIN, [*train, "--hparams=learning_rate=fast"], "--hparams"),
        (TRAIN, [*train, "--hparams=preset=magenta_2099"], "--hparams"),
        (TRAIN, [*train, f"--sequence_example_file={d / 'nope*.tfrecord'}"], "--sequence_example_file: no such"),
        (TRAIN, [*train, f"--sequence_example_file={d / 'noise.tfrecord'}"], "--sequence_example_file"),
        (TRAIN, [*train, f"--sequence_example_file={w['ns']}"], "--sequence_example_file"),
        (TRAIN, [*train, f"--run_dir={d / 'a_file'}"], "--run_dir"),
        (TRAIN, [*train, f"--run_dir={under_a_file}"], "--run_dir"),
        (TRAIN, [*train, "--config=basic_rnn"], "--config"),
        (GENERATE, [*gen, "--primer_melody=[60, -2, 60"], "--primer_melody: not a Python list of ints"),
        (GENERATE, [*gen, "--primer_melody=[60, 128]"], "--primer_melody: event 128 is outside"),
        (GENERATE, [*gen, "--primer_melody=[60, -3]"], "--primer_melody: event -3 is outside"),
        (GENERATE, [*gen, "--primer_melody=__import__('os').system('true')"], "--primer_melody"),
        (GENERATE, [*gen, "--primer_melody=[]"], "--primer_melody: the list is empty"),
        (GENERATE, [*gen, "--primer_melody=[60.5]"], "--primer_melody"),
        (GENERATE, [*gen, f"--primer_midi={d / 'missing.mid'}"], "--primer_midi: no such file"),
        (GENERATE, [*gen, f"--primer_midi={d / 'noise.mid'}"], "--primer_midi"),
        (GENERATE, [*gen, "--primer_melody=[60]", f"--primer_midi={d / 'noise.mid'}"], "at most one primer"),
        (GENERATE, [*gen, "--num_steps=-16"], "--num_steps"),
        (GENERATE, [*gen, "--num_outputs=0"], "--num_outputs"),
        (GENERATE, [*gen, "--temperature=-1"], "--temperature"),
        (GENERATE, [*gen, "--temperature=nan"], "--temperature"),
        (GENERATE, [*gen, "--qpm=0"], "--qpm"),
        (GENERATE, [*gen, "--beam_size=0"], "--beam_size"),
        (GENERATE, [*gen, "--branch_factor=x"], "--branch_factor"),
        (GENERATE, [*gen, "--steps_per_iteration=-1"], "--steps_per_iteration"),
        (GENERATE, [*gen, "--hparams=attn_length=20"], "--hparams: attn_length=20 but the model has 40"),
        (GENERATE, [*gen, "--hparams=nonsense=1"], "--hparams"),
        (GENERATE, [f"--bundle_file={d / 'missing.mag'}", f"--output_dir={out}"], "--bundle_file"),
        (GENERATE, [f"--bundle_file={d / 'noise.mid'}", f"--output_dir={out}"], "--bundle_file"),
        (GENERATE, [f"--run_dir={d / 'empty_run'}", f"--output_dir={out}"], "--run_dir: no checkpoint"),
        (GENERATE, [f"--run_dir={d / 'missing_run'}", f"--output_dir={out}"], "--run_dir"),
        (GENERATE, [f"--bundle_file={w['bundle']}", f"--output_dir={under_a_file}"], "--output_dir"),
        (GENERATE, [f"--bundle_file={w['bundle']}", f"--output_dir={d / 'a_file'}"], "--output_dir"),
        (GENERATE, [f"--run_dir={d / 'empty_run'}", "--save_generator_bundle"], "--save_generator_bundle"),
        (GENERATE, [f"--run_dir={d / 'empty_run'}", "--save_generator_bundle", f"--bundle_file={w['bundle']}"],
         "already exists"),
    ]


def _snapshot(root):
    return {os.path.join(p, n): os.stat(os.path.join(p, n)).st_mtime_ns
            for p, dirs, names in os.walk(root) for n in names + dirs}


def test_every_bad_flag_is_one_line_exit_2_and_writes_nothing(world):
    before = _snapshot(world["dir"])
    table = cases(world)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda c: run_cli(c[0], *c[1], timeout=300), table))
    failures = []
    for (cmd, flags, words), r in zip(table, results):
        lines = r.stderr.strip().splitlines()
        if r.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or words not in lines[0]:
            failures.append(f"{cmd.rsplit('.', 1)[1]} {' '.join(flags)}\n  rc={r.returncode} "
                            f"stderr={r.stderr.strip()[-600:]!r}")
    assert not failures, f"{len(failures)} of {len(table)} cases:\n" + "\n".join(failures)
    assert _snapshot(world["dir"]) == before      # no output file, directory or temp file appeared or changed
