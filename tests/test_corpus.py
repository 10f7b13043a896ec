"""The default corpus: music21's ABC tune books become NoteSequences and then training melodies."""

import collections

import pytest

from attnrnn_lib import corpus, dataset, melodies, tfrecord
from attnrnn_lib._note_seq import music_pb2
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def oneill_subset(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("ATTNRNN_CACHE", str(cache))
    path, report = corpus.build_corpus(("oneills1850",), max_files=1, num_workers=2)
    yield path, report, cache
    mp.undo()


def test_tunebook_splits_into_tunes():
    text = corpus.corpus_files("oneills1850")[0].read_text()
    tunes = corpus.split_tunebook(text)
    assert len(tunes) == 50 and tunes[0][0] == "1" and tunes[0][1].lstrip().startswith("X:")


def test_oneill_tunes_become_note_sequences_and_melodies(oneill_subset):
    path, report, _ = oneill_subset
    assert report["tunes"] == 50 and report["converted"] + sum(report["skipped"].values()) == 50
    assert report["converted"] >= 45
    seqs = [music_pb2.NoteSequence.FromString(r) for r in tfrecord.read_records(path)]
    first = seqs[0]
    assert first.collection_name == "oneills1850" and first.filename == "0001-0050.abc#1"
    assert first.sequence_metadata.title == "The Enchanted Valley"
    assert first.time_signatures[0].time == 0 and (first.time_signatures[0].numerator, first.time_signatures[0].denominator) == (2, 4)
    stats = collections.Counter()
    found = [m for s in seqs for m in melodies.melodies_from_sequence(s, melodies.ExtractionRules(), stats)]
    assert len(found) >= 40, stats  # most tunes give a training melody


def test_second_build_comes_from_the_cache(oneill_subset):
    path, _, cache = oneill_subset
    again, report = corpus.build_corpus(("oneills1850",), max_files=1)
    assert again == path and report["built"] is False and report["converted"] >= 45


def test_cli_builds_dataset_from_the_corpus(oneill_subset, tmp_path, monkeypatch):
    _, _, cache = oneill_subset
    monkeypatch.setenv("ATTNRNN_CACHE", str(cache))
    ns = tmp_path / "ns.tfrecord"
    r = run_cli("attnrnn_lib.cli.convert_dir_to_note_sequences", "--music21_corpus=oneills1850",
                "--music21_max_files=1", f"--output_file={ns}")
    assert r.returncode == 0, r.stderr
    r = run_cli("attnrnn_lib.cli.create_dataset", f"--input={ns}", f"--output_dir={tmp_path / 'se'}")
    assert r.returncode == 0, r.stderr
    assert len(tfrecord.read_records(tmp_path / "se" / dataset.TRAIN_FILE)) >= 30
