#!/usr/bin/env bash
# The main job. For now: build the default training dataset from the folk tunes music21 ships (no download):
# ABC tune books -> NoteSequences -> melodies -> SequenceExamples in ./out/dataset.
# (Generation from the shipped model will become the main job when it lands.)
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
OUT=${OUT:-out}
mkdir -p "$OUT/dataset"
[ -f "$OUT/notesequences.tfrecord" ] ||
  convert_dir_to_note_sequences --music21_corpus=oneills1850,airdsAirs,ryansMammoth --output_file="$OUT/notesequences.tfrecord"
attention_rnn_create_dataset --input="$OUT/notesequences.tfrecord" --output_dir="$OUT/dataset" --eval_ratio=0.1 \
  --seed=0 --overwrite
echo "dataset ready: $OUT/dataset/training_melodies.tfrecord and eval_melodies.tfrecord"
