#!/usr/bin/env bash
# The README's own-data walkthrough (section "Your own videos, end to end") on the second-style
# collection. Usage, from the repository root:
#   bash studies/second_style/run.sh RUN_NAME [STEPS] [extra train overrides ...]
# e.g.  bash studies/second_style/run.sh default_s0
#       bash studies/second_style/run.sh default_s1 800 pretrain.seed=1
#       bash studies/second_style/run.sh old_default_s0 400 loader.image_size=96 model.video.image_size=96
# The shards are made once, in runs/second_style/shards/{train,test} (the walkthrough's step 1
# with RUN=runs/second_style), and every run reads them.
set -euo pipefail
NAME=$1; shift
STEPS=${1:-800}; shift || true
DATA=runs/second_style/data          # train.json, test.csv and the videos in runs/second_style/data/videos/
SHARDS=runs/second_style/shards
RUN=runs/second_style/$NAME

# 1. shards: DIR/stats.parquet accounts for every annotation row (skipped when already whole)
if [ ! -f $SHARDS/train/stats.parquet ]; then
  python -m preprocess --annotations $DATA/train.json --videos $DATA/videos --out $SHARDS/train
fi
if [ ! -f $SHARDS/test/stats.parquet ]; then
  python -m preprocess --annotations $DATA/test.csv --videos $DATA/videos --format msrvtt_1ka \
      --out $SHARDS/test
fi

# 2. pre-train smaug (params.yaml + overrides)
python -m train.pretrain --run-dir $RUN pretrain.shards=$SHARDS/train \
    pretrain.steps=$STEPS pretrain.warmup=$((STEPS / 10)) "$@"

# 3. zero-shot retrieval on the test shards
python -m eval.evaluate --run-dir $RUN --recipe smaug "eval.tasks=[retrieval]" \
    eval.retrieval.shards=$SHARDS/test eval.retrieval.order_pairs=null \
    eval.retrieval.dataset=second_style
python -m eval.tables --run-dir $RUN
