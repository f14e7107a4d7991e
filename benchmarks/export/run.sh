#!/usr/bin/env bash
# Export parity: the quickstart run (SmolLM2-135M-Instruct, support-desk chats), and a SmolLM2 and a Gemma 3 270M run
# on SST-2 as generation (30 LoRA steps each, so the task metric's delta has an interval), each exported merged, as
# f16, q8_0 and q4_0 GGUF (and q4_k_m when llama-cpp-python is installed) with an Ollama Modelfile; every artifact
# read back by transformers (and each GGUF by llama.cpp, installed by `make llama-cpp`) and compared with the run on
# 64 held-out rows.
#   bash benchmarks/export/run.sh          # from the repository root; runs/export-* and the table at the end
set -euo pipefail
cd "$(dirname "$0")/../.."
ts=${TUNESMITH:-.venv/bin/tunesmith}
py=${PYTHON:-.venv/bin/python}
quants=(f16 q8_0 q4_0)
if $py -c "import llama_cpp" 2>/dev/null; then quants+=(q4_k_m); fi
export_run() {  # exit 1 (an artifact below its threshold) is a result to tabulate, not a reason to stop
  [ -f $1-out/export.json ] || $ts export $1 --to merged gguf ollama --quant "${quants[@]}" --out $1-out --rows 64 \
    || [ $? -eq 1 ]
}
[ -f runs/export-quickstart/final/adapter_config.json ] || $ts quickstart --out runs/export-quickstart
export_run runs/export-quickstart
for base in smollm2-135m-instruct gemma3-270m; do
  run=runs/export-$base
  [ -f $run/final/adapter_config.json ] || $ts train benchmarks/forgetting/sst2.yaml model.base=$base \
    train.max_steps=30 data.replay.fraction=0 eval.general=false output.dir=$run
  export_run $run
done
$py benchmarks/export/table.py runs/export-quickstart-out runs/export-smollm2-135m-instruct-out runs/export-gemma3-270m-out
