"""The export parity table of benchmarks/README.md from export folders' export.json.

python benchmarks/export/table.py runs/export-smollm2-135m-instruct-out runs/export-gemma3-270m-out
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folders: list[str]) -> None:
    print("| run | artifact | read by | size | greedy answers identical | answer tokens identical | next token "
          "identical (teacher-forced) | mean KL / token | held-out loss delta | accuracy delta [paired 95% CI] | "
          "prompts tokenized alike | passed |")  # fmt: skip
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|")
    for folder in map(Path, folders):
        summary = json.loads((folder / "export.json").read_text(encoding="utf-8"))
        sizes = {f["path"]: f["bytes"] for f in summary["files"].values()}
        for p in summary["parity"]:
            diff = next(iter(p["task"].values()), {}).get("diff")
            delta = f"{diff['diff']:+.3f} [{diff['low']:+.3f}, {diff['high']:+.3f}]" if diff else ""
            tokenized = "" if p.get("tokenizer_identical") is None else f"{p['tokenizer_identical']:.1%}"
            print(f"| {folder.name} | {p['artifact']} | {p.get('reader', 'transformers')} | "
                  f"{sizes.get(p['artifact'], 0) / 2**20:.0f} MiB | {p['answers_identical']:.1%} | "
                  f"{p['tokens_identical']:.1%} | {p['next_token_identical']:.1%} | {p['mean_kl']:.2e} | "
                  f"{p['loss_delta']:+.4f} | {delta} | "
                  f"{tokenized} | {'yes' if p['passed'] else 'no'} |")  # fmt: skip
        template = summary.get("ollama_template")
        if template:
            print(f"\n{folder.name}: Modelfile TEMPLATE identical to the training render on "
                  f"{template['conversations']} conversations ({template['tokens']} tokens)\n")  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:])
