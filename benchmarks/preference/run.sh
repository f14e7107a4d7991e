#!/usr/bin/env bash
# Preference tuning on HH-RLHF helpful-base, base vs DPO vs SimPO, judged by a reward model trained on other pairs.
# Runs one after another (about an hour on 2 CPU cores); each is an ordinary run with report.html and eval/*.json.
#   bash benchmarks/preference/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
python benchmarks/preference/split.py runs/bench-preference/judge-pairs.jsonl
tunesmith train benchmarks/preference/judge.yaml
tunesmith train benchmarks/preference/dpo.yaml
tunesmith train benchmarks/preference/simpo.yaml
python benchmarks/preference/table.py runs/bench-preference
