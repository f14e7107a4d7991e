#!/usr/bin/env bash
# Two tasks in sequence: SST-2 sentiment (as generation), then SciTLDR summaries continuing from it, with no replay,
# with self replay (the base's own answers to general prompts) and with the parent's rows replayed too (both: the
# default when continuing from a run). The first run and each second-task run are then scored on the first task's
# held-out rows (tunesmith eval --config): the first against the base, each second against the first.
#   bash benchmarks/forgetting/sequence.sh            # from the repository root; runs/seq-* and a table at the end
set -euo pipefail
cd "$(dirname "$0")/../.."
ts=${TUNESMITH:-.venv/bin/tunesmith}
probe=(eval.probe_data=../shared/data)
[ -f runs/seq-sst2/final/adapter_config.json ] || $ts train benchmarks/forgetting/sst2.yaml "${probe[@]}"
[ -f runs/seq-sst2/eval/sst2.json ] || $ts eval runs/seq-sst2 --config benchmarks/forgetting/sst2.yaml --out runs/seq-sst2/eval/sst2.json
for variant in none self both; do
  out=runs/seq-scitldr-$variant
  case $variant in
    none) extra=(data.replay.fraction=0) ;;
    self) extra=(data.replay.source=self) ;;
    both) extra=(data.replay.source=both) ;;
  esac
  [ -f $out/final/adapter_config.json ] || $ts train benchmarks/forgetting/scitldr.yaml output.dir=$out "${extra[@]}" "${probe[@]}"
  [ -f $out/eval/sst2.json ] || $ts eval $out --config benchmarks/forgetting/sst2.yaml --out $out/eval/sst2.json
done
.venv/bin/python benchmarks/forgetting/sequence_table.py
