"""Generation: primers, Magenta's start-step timing, determinism, beam search, output files, the CLI."""

import os
import re

import numpy as np
import pretty_midi
import pytest

from attnrnn_lib import encoding, generate, melody_io
from attnrnn_lib.bundle import build_model, read_bundle
from attnrnn_lib.errors import UsageError
from tests.conftest import run_cli, shared, write_midi


@pytest.fixture(scope="module")
def magenta_bundle():
    return shared("bundles", "alexandrejup_attention_rnn.mag")


@pytest.fixture(scope="module")
def model(magenta_bundle):
    return build_model(read_bundle(str(magenta_bundle)))


@pytest.mark.parametrize("primer, fed", [   # SPEC §5.3, measured with Magenta at 120 qpm
    ([60], [60, -1, -2]),
    ([60, -2, -2, -2], [60, -2, -2, -2, -1, -2]),
    ([60, -2, 62, -1], [60, -2, 62, -1, -2]),
    ([-1, 60, -2], [-2, 60, -2, -1, -2]),           # a leading note-off becomes a no-event
    ([-2, -2], [-2]),                                # no notes: one no-event, as Magenta's empty melody
])
def test_primer_timing_is_magentas(primer, fed):
    assert generate.prepare_primer(primer, 128) == fed
    assert generate.prepare_primer(primer, 128, start="next_step") == fed[:-1] if fed != [-2] else True


def test_primer_longer_than_num_steps_is_a_clear_error():
    with pytest.raises(UsageError, match="--num_steps: the primer ends at step 4"):
        generate.prepare_primer([60, -2, -2, -2], 6)
    assert len(generate.prepare_primer([60, -2, -2, -2], 7)) == 6


def test_no_primer_is_a_seeded_random_note_in_range():
    notes = {generate.prepare_primer(None, 64, rng=np.random.default_rng(s))[0] for s in range(40)}
    assert len(notes) > 10 and all(48 <= n < 84 for n in notes)
    assert generate.prepare_primer(None, 64, rng=np.random.default_rng(7)) == \
        generate.prepare_primer(None, 64, rng=np.random.default_rng(7))


@pytest.mark.parametrize("text", ["[60, -2, 60", "60", "[60, 'a']", "[60, -3]", "[128]", "[]", "[True]",
                                  "__import__('os')"])
def test_bad_primer_melody_is_one_clear_line(text):
    with pytest.raises(UsageError) as e:
        melody_io.parse_primer_melody(text)
    assert str(e.value).startswith("--primer_melody:") and "\n" not in str(e.value)


def test_primer_midi_takes_the_melody_and_its_tempo(tmp_path, nottingham_melody):
    path = sorted(nottingham_melody.rglob("*.mid"))[0]
    events, qpm = melody_io.primer_from_midi(str(path))
    pm = pretty_midi.PrettyMIDI(str(path))
    assert qpm == pytest.approx(pm.get_tempo_changes()[1][0])
    first = min(n.start for i in pm.instruments for n in i.notes)
    onsets = [i for i, e in enumerate(events) if e >= 0]
    assert onsets[0] == round(first / (60 / qpm / 4)) and events[onsets[0]] >= 0
    two = write_midi(tmp_path / "two.mid", [[(60, 0, 0.5)], [(64, 0, 0.5)]])
    with pytest.raises(UsageError, match="2 instruments"):
        melody_io.primer_from_midi(str(two))


def test_generation_is_deterministic_and_returns_probabilities_and_attention(model):
    a = generate.generate(model, [60, -2, 62, -2], num_steps=64, num_outputs=4, seed=5)
    b = generate.generate(model, [60, -2, 62, -2], num_steps=64, num_outputs=4, seed=5)
    c = generate.generate(model, [60, -2, 62, -2], num_steps=64, num_outputs=4, seed=6)
    assert [m.events for m in a] == [m.events for m in b] and [m.events for m in a] != [m.events for m in c]
    m = a[0]
    assert len(m.events) == 64 and m.events[:7] == [60, -2, 62, -2, -1, -2, m.events[6]]
    assert m.primer_steps == 6 and m.probabilities.shape == (63, 40) and m.attention.shape == (63, 40)
    np.testing.assert_allclose(m.probabilities.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(m.attention.sum(-1), 1.0, atol=1e-5)
    # The log-likelihood is the sum of log p of every event after the first under the returned distributions.
    labels = encoding.encode_labels(encoding.clean_events(m.events))[1:]
    assert m.log_likelihood == pytest.approx(np.log(m.probabilities[np.arange(63), labels]).sum(), rel=1e-4)


def test_output_is_transposed_back_to_the_primers_register(model):
    low = generate.generate(model, [36, -2, 38, -2, 40, -2], num_steps=48, num_outputs=3, seed=1)
    for m in low:
        assert m.transpose == 24 and m.events[:6] == [36, -2, 38, -2, 40, -2]
        assert min(e for e in m.events if e >= 0) < 48


def test_beam_search_finds_more_likely_melodies_than_sampling(model):
    sampled = generate.generate(model, [60], num_steps=48, num_outputs=8, seed=3)
    beamed = generate.generate(model, [60], num_steps=48, num_outputs=8, seed=3, beam_size=4, branch_factor=4,
                               steps_per_iteration=2)
    assert np.mean([m.log_likelihood for m in beamed]) > np.mean([m.log_likelihood for m in sampled]) + 2.0
    assert all(len(m.events) == 48 for m in beamed)


def test_lower_temperature_concentrates_the_distribution(model):
    cold = generate.generate(model, [60], num_steps=48, num_outputs=4, seed=2, temperature=0.5)
    hot = generate.generate(model, [60], num_steps=48, num_outputs=4, seed=2, temperature=2.0)
    entropy = lambda ms: np.mean([-(m.probabilities * np.log(m.probabilities + 1e-12)).sum(-1).mean() for m in ms])  # noqa
    assert entropy(cold) < entropy(hot)


def test_cli_writes_named_midi_png_wav_and_same_seed_same_bytes(tmp_path, magenta_bundle):
    outs = []
    for name in ("a", "b"):
        r = run_cli("attnrnn_lib.cli.generate", f"--bundle_file={magenta_bundle}", f"--output_dir={tmp_path / name}",
                    "--num_outputs=3", "--num_steps=64", "--primer_melody=[60, -2, 67, -2]", "--seed=9",
                    "--attention_png", "--wav")
        assert r.returncode == 0, r.stderr
        files = sorted(os.listdir(tmp_path / name))
        # Magenta's names: date_time_count, the count zero-padded to len(str(num_outputs)) digits.
        assert len(files) == 9 and all(re.fullmatch(r"\d{4}-\d\d-\d\d_\d{6}_[123]\.(mid|png|wav)", f) for f in files)
        outs.append([(tmp_path / name / f).read_bytes() for f in files if f.endswith(".mid")])
        png = next(f for f in files if f.endswith(".png"))
        assert (tmp_path / name / png).read_bytes()[:4] == b"\x89PNG"
    assert outs[0] == outs[1]
    pm = pretty_midi.PrettyMIDI(str(next((tmp_path / "a").glob("*_1.mid"))))
    assert pm.resolution == 220 and pm.instruments[0].program == 0
    assert [n.pitch for n in pm.instruments[0].notes[:2]] == [60, 67]
    assert all(n.velocity == 100 for n in pm.instruments[0].notes)
    assert pm.get_end_time() <= 64 * 0.125 + 1e-6


def test_cli_never_overwrites_and_rejects_bad_flags(tmp_path, magenta_bundle):
    target = tmp_path / "out"
    target.mkdir()
    cases = [
        (["--primer_melody=[60, -2, 60"], "--primer_melody: not a Python list of ints"),
        (["--num_steps=0"], "--num_steps"),
        (["--temperature=0"], "--temperature: must be > 0"),
        (["--hparams=rnn_layer_sizes=[128,128]"], "--hparams: rnn_layer_sizes=(128, 128) but the model has (64, 64)"),
        (["--primer_melody=[60,-2,-2,-2]", "--num_steps=5"], "--num_steps: the primer ends at step 4"),
        (["--run_dir=" + str(tmp_path)], "--bundle_file and --run_dir"),
    ]
    for extra, message in cases:
        r = run_cli("attnrnn_lib.cli.generate", f"--bundle_file={magenta_bundle}", f"--output_dir={target}", *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert message in r.stderr and r.stderr.strip().count("\n") == 0, r.stderr
    assert os.listdir(target) == []
    with pytest.raises(UsageError, match="already exists"):
        (target / "x.mid").write_bytes(b"old")
        melody_io.write_new_file(str(target / "x.mid"), b"new")
    assert (target / "x.mid").read_bytes() == b"old" and os.listdir(target) == ["x.mid"]
