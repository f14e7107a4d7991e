#!/usr/bin/env bash
# Two tasks in sequence: SST-2 sentiment (as generation), then SciTLDR summaries continuing from it, with no replay,
# with the default replay (the base's own answers to general prompts) and with the parent's rows replayed too. Each
# second-task run is then scored on the first task's held-out rows against the first run (tunesmith eval --config).
#   bash benchmarks/forgetting/sequence.sh            # from the repository root; runs/seq-* and a table at the end
set -euo pipefail
cd "$(dirname "$0")/../.."
ts=${TUNESMITH:-.venv/bin/tunesmith}
probe=(eval.probe_data=../shared/data)
[ -f runs/seq-sst2/final/adapter_config.json ] || $ts train benchmarks/forgetting/sst2.yaml "${probe[@]}"
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
