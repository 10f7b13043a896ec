"""Same seed, same bytes, end to end: MIDI -> NoteSequences -> SequenceExamples -> trained weights -> melodies.

The whole chain runs twice from scratch through the four commands, on the CPU, and every artefact is compared
byte for byte; a third chain with another seed must differ where the seed matters.
"""

import hashlib
import shutil

import pytest

from tests.conftest import run_cli


def _chain(root, midi_dir, seed):
    """Runs the four commands into `root`; returns {artefact: sha1 of its bytes}."""
    root.mkdir()
    steps = [
        ("attnrnn_lib.cli.convert_dir_to_note_sequences", f"--input_dir={midi_dir}",
         f"--output_file={root / 'ns.tfrecord'}", "--num_workers=2"),
        ("attnrnn_lib.cli.create_dataset", f"--input={root / 'ns.tfrecord'}", f"--output_dir={root / 'ds'}",
         "--eval_ratio=0.2", f"--seed={seed}"),
        ("attnrnn_lib.cli.train", f"--run_dir={root / 'run'}", "--hparams=preset=ci", f"--seed={seed}",
         f"--sequence_example_file={root / 'ds' / 'training_melodies.tfrecord'}", "--num_training_steps=8",
         "--save_checkpoint_steps=8", "--summary_frequency=8"),
        ("attnrnn_lib.cli.generate", f"--run_dir={root / 'run'}", f"--output_dir={root / 'out'}", f"--seed={seed}",
         "--num_outputs=3", "--num_steps=64", "--primer_melody=[60, -2, 62, -2]"),
    ]
    for args in steps:
        r = run_cli(*args)
        assert r.returncode == 0, (args[0], r.stderr[-2000:])
    digest = lambda p: hashlib.sha1(p.read_bytes()).hexdigest()  # noqa: E731
    out = {name: digest(root / name) for name in
           ("ns.tfrecord", "ds/training_melodies.tfrecord", "ds/eval_melodies.tfrecord",
            "run/train/model.ckpt-8.data-00000-of-00001")}
    # Generated files carry the clock in their names; their contents, in order, are what must repeat.
    out["melodies"] = [digest(p) for p in sorted((root / "out").iterdir())]
    return out


@pytest.fixture(scope="module")
def midi_dir(tmp_path_factory, nottingham_melody):
    d = tmp_path_factory.mktemp("midi")
    for f in sorted(nottingham_melody.glob("*.mid"))[:60]:
        shutil.copy(f, d / f.name)
    return d


def test_same_seed_same_bytes_at_every_stage(tmp_path, midi_dir):
    first = _chain(tmp_path / "a", midi_dir, seed=5)
    second = _chain(tmp_path / "b", midi_dir, seed=5)
    assert first == second
    other = _chain(tmp_path / "c", midi_dir, seed=6)
    assert other["ns.tfrecord"] == first["ns.tfrecord"]           # conversion takes no seed
    for name in ("ds/eval_melodies.tfrecord", "run/train/model.ckpt-8.data-00000-of-00001", "melodies"):
        assert other[name] != first[name], name
