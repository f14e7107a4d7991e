"""Read an exported GGUF with llama.cpp itself (llama-cpp-python), the runtime Ollama and LM Studio embed: the second
reader of `tunesmith export`'s parity check, beside transformers' GGUF loader.

    reader = LlamaCppReader.open(path, tokenizer, n_ctx=1024, threads=2)     # None when llama-cpp-python is absent
    reader.logits(ids)                     # (len(ids), vocab) float, every position teacher-forced
    reader.answers(prompts, 48, stop_ids)  # greedy, token by token from llama.cpp's logits
    reader.tokenize(text)                  # llama.cpp's own tokenizer, from the GGUF's metadata

Token ids go in as the training tokenizer made them, so the model's function is what is compared; `tokenize` checks
separately that the runtime's tokenizer, reading the GGUF's tokenizer metadata, turns the rendered prompt text into
the same ids.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch


def available() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppReader:
    name = "llama.cpp"

    def __init__(self, llm: Any, tokenizer: Any) -> None:
        self.llm = llm
        self.tokenizer = tokenizer

    @classmethod
    def open(cls, path: Path, tokenizer: Any, n_ctx: int, threads: int | None = None) -> LlamaCppReader | None:
        if not available():
            return None
        from llama_cpp import Llama

        threads = threads or torch.get_num_threads() or os.cpu_count() or 1
        llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=n_ctx,
            n_ubatch=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            logits_all=True,  # every position's logits: teacher-forced KL and loss
            seed=0,
            verbose=False,
        )
        return cls(llm, tokenizer)

    def logits(self, ids: list[int]) -> torch.Tensor:
        self.llm.reset()
        self.llm.eval(ids)
        return torch.from_numpy(np.array(self.llm.scores[: len(ids)], dtype=np.float32))

    def answers(self, prompts: list[list[int]], max_new_tokens: int, stop_ids: list[int]) -> list[str]:
        stop = set(stop_ids)
        out = []
        for prompt in prompts:
            self.llm.reset()
            self.llm.eval(prompt)
            new: list[int] = []
            for _ in range(max_new_tokens):
                token = int(np.argmax(self.llm.scores[self.llm.n_tokens - 1]))
                if token in stop:
                    break
                new.append(token)
                self.llm.eval([token])
            out.append(self.tokenizer.decode(new, skip_special_tokens=True).strip())
        return out

    def tokenize(self, text: str) -> list[int]:
        """llama.cpp's tokenization of `text` (special tokens parsed, no BOS added)."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def close(self) -> None:
        self.llm.close()
