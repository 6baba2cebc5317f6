#!/bin/sh
# Base vs fine-tuned, side by side: how docs/examples/compare/ was made (issue 18).
# The bundled all-MiniLM-L6-v2 is fine-tuned for 8 steps (batch 16, 1 hard negative, lr 5e-5,
# the M3 recipe = configs/m3-finetune.yaml's loss, with the quickstart's small lengths) on
# hard negatives mined from the bundled XQuAD-en/de *train* questions (queries left with no
# negative after TopK-PercPos go to mined-*.jsonl.short.jsonl), then both models are
# evaluated on the first 100 held-apart *test* questions of each language. CPU only.
set -e
OUT=${1:-/tmp/embforge-compare}
DEMO=$(python -c 'from embforge.resources import demo_path; print(demo_path("xquad-en").parent)')
mkdir -p "$OUT"
for lang in en de; do
  embforge mine "$DEMO/xquad-$lang" -o "$OUT/mined-$lang.jsonl" --split train --negatives 1 \
    --top-k 30 --max-length 128 --short separate --no-progress
done
embforge train configs/m3-finetune.yaml model.path=null "data.train_files=[$OUT/mined-en.jsonl,$OUT/mined-de.jsonl]" \
  data.num_negatives=1 data.query_max_length=32 data.doc_max_length=128 loss.temperature=0.05 \
  optim.lr=5e-5 loop.max_steps=8 loop.batch_size=16 loop.sub_batch_size=16 loop.precision=fp32 \
  loop.checkpoint_every=0 loop.resume=false loop.threads=2 loop.progress=false model.gradient_checkpointing=false \
  loop.output_dir="$OUT/m3"
embforge eval -m bundled -m "$OUT/m3/final" --name base --name fine-tuned \
  --beir "$DEMO/xquad-en" --beir "$DEMO/xquad-de" --heads dense,sparse,multivector \
  --mrl-dims none --max-length 128 --max-queries 100 -o docs/examples/compare
