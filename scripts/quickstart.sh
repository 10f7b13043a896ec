#!/usr/bin/env bash
# The main job: compose melodies with the pre-trained model that ships in pretrained/attention_rnn.mag
# (trained by our own attention_rnn_train on folk tunes that come with music21; no download).
# Writes, into ./out/generated: one MIDI file per melody, its attention heatmap (PNG) and its audio (WAV).
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
OUT=${OUT:-out}
attention_rnn_generate --output_dir="$OUT/generated" --num_outputs=4 --num_steps=192 \
  --primer_melody="[60, -2, 60, -2, 67, -2, 67, -2, 69, -2, 69, -2, 67, -2, -2, -2]" \
  --temperature=1.0 --seed=0 --attention_png --wav
echo "done: $(ls "$OUT"/generated | wc -l) files in $OUT/generated (.mid to play, .png to see what the model attended to, .wav to hear)"
