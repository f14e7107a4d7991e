"""Write a causal LM's weights as a GGUF file that llama.cpp, Ollama and LM Studio run, with the `gguf` package.

    write_gguf(model, source=Path("SmolLM2.gguf"), out=Path("model-q8_0.gguf"), quant="q8_0",
               chat_template=template, extra={"tunesmith.run": "runs/x"})

The metadata (architecture hyperparameters, tokenizer vocabulary, merges or scores, special tokens) is copied from
the GGUF the base model came from: it is what llama.cpp already reads for that model, so the exported file is that
model with other weights. A base that came from no GGUF (an HF folder) gets its metadata from its config and
tokenizer: llama architectures with a byte-level BPE tokenizer (GPT-2 style). The chat template is replaced by the
one the run trained with, and the run's lineage is added under `tunesmith.*` keys. Tensors are named by gguf's own
HF-to-GGUF name map and laid out as llama.cpp's converter lays them out (llama: q and k rows permuted for its rotary
layout; gemma: norm weights stored as 1 + w), the inverse of what transformers' GGUF loader does reading one back.

Quantisations: f16 and q8_0 (and q4_0) are written here by gguf's own quantizers; q4_k_m needs llama.cpp's
quantizer, which llama-cpp-python exposes (`make llama-cpp`), applied to the f16 file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tunesmith.errors import TunesmithError
from tunesmith.models import llama_cpp_read

# Architectures written (transformers model_type -> GGUF architecture name).
ARCHITECTURES = {"llama": "llama", "gemma3_text": "gemma3", "gemma3": "gemma3"}
QUANTS = ("f16", "q8_0", "q4_0", "q4_k_m")
# Keys that describe the file rather than the model: written anew for the exported file.
_FILE_KEYS = {"general.file_type", "general.quantization_version", "tokenizer.chat_template"}


class ExportError(TunesmithError):
    """A model or request that cannot be exported; the message says why."""


@dataclass(frozen=True)
class Quant:
    name: str
    file_type: int  # general.file_type (llama.cpp's LLAMA_FTYPE)
    weights: str  # how the 2-D weights are written: f16 | q8_0 | q4_0 (q4_k_m starts from f16)


_QUANTS = {
    "f16": Quant("f16", 1, "f16"),
    "q8_0": Quant("q8_0", 7, "q8_0"),
    "q4_0": Quant("q4_0", 2, "q4_0"),
    "q4_k_m": Quant("q4_k_m", 15, "f16"),
}


def gguf_architecture(model: nn.Module) -> str:
    model_type = model.config.model_type
    if model_type not in ARCHITECTURES:
        supported = ", ".join(sorted({k for k in ARCHITECTURES if k != "gemma3"}))
        raise ExportError(f"cannot write a GGUF for a {model_type!r} model (supported architectures: {supported})")
    return ARCHITECTURES[model_type]


def _permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's rotary layout for q and k rows: each head's two halves interleaved (transformers' GGUF loader
    undoes exactly this)."""
    halves = weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
    return halves.swapaxes(1, 2).reshape(weight.shape)


def gguf_tensors(model: nn.Module, arch: str) -> dict[str, np.ndarray]:
    """The model's weights under their GGUF names, in llama.cpp's layout, as float32 arrays (a tied output head is
    not written: llama.cpp ties it again when output.weight is absent)."""
    import gguf

    config = model.config
    arch_id = next(k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch)
    names = gguf.get_tensor_name_map(arch_id, config.num_hidden_layers)
    tied = getattr(config, "tie_word_embeddings", False)
    out: dict[str, np.ndarray] = {}
    for hf_name, tensor in model.state_dict().items():
        if tied and hf_name == "lm_head.weight":
            continue
        name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise ExportError(f"no GGUF name for the {arch} weight {hf_name}")
        data = tensor.detach().to(torch.float32).cpu().numpy()
        if arch == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
            heads = config.num_attention_heads if "attn_q" in name else config.num_key_value_heads
            data = _permute(data, heads)
        if arch == "gemma3" and name.endswith("norm.weight"):
            data = data + 1.0  # Gemma's RMSNorm multiplies by (1 + w); GGUF stores the multiplier
        out[name] = np.ascontiguousarray(data)
    return out


def _encode(name: str, data: np.ndarray, quant: Quant):
    """(array, raw dtype) for gguf's writer: 1-D tensors (norms) stay float32, as llama.cpp's converter keeps them;
    a matrix whose rows do not split into quantisation blocks falls back to f16."""
    import gguf

    if data.ndim < 2:
        return data.astype(np.float32), None
    if quant.weights in ("q8_0", "q4_0"):
        qtype = gguf.GGMLQuantizationType.Q8_0 if quant.weights == "q8_0" else gguf.GGMLQuantizationType.Q4_0
        block = gguf.GGML_QUANT_SIZES[qtype][0]
        if data.shape[-1] % block == 0:
            return gguf.quants.quantize(data, qtype), qtype
    return data.astype(np.float16), None


def _copy_metadata(writer, source: Path) -> None:
    """Every key of the source GGUF but the file's own (type, quantisation, chat template) and the reader's
    GGUF.* bookkeeping, with its value type."""
    import gguf

    reader = gguf.GGUFReader(source)
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key in _FILE_KEYS or key == "general.architecture":
            continue
        main = field.types[0]
        sub = field.types[-1] if main == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, field.contents(), main, sub_type=sub)


def _llama_metadata(writer, config) -> None:
    """A llama model's hyperparameters from its HF config, under the keys llama.cpp reads."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_freq_base(float(getattr(config, "rope_theta", None) or config.rope_parameters["rope_theta"]))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    writer.add_vocab_size(config.vocab_size)


def _bpe_metadata(writer, tokenizer, vocab_size: int, adds_bos: bool) -> None:
    """A byte-level BPE tokenizer (GPT-2 style: SmolLM2, Llama 3, Qwen) as llama.cpp's `gpt2` tokenizer model: the
    tokens by id (ids the tokenizer does not use, up to the model's vocabulary, as unused pad tokens), their types,
    the merges and the special ids."""
    import json

    import gguf

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    pre = json.dumps(spec.get("pre_tokenizer") or {})
    if spec["model"].get("type") != "BPE" or "ByteLevel" not in pre:
        raise ExportError(
            "--to gguf from an HF base reads byte-level BPE tokenizers only; this one is "
            f"{spec['model'].get('type')} (a base loaded from a GGUF keeps that GGUF's tokenizer)"
        )
    vocab = tokenizer.get_vocab()
    tokens = [f"[PAD{i}]" for i in range(max(vocab_size, max(vocab.values()) + 1))]
    types = [gguf.TokenType.UNUSED] * len(tokens)
    for token, i in vocab.items():
        tokens[i], types[i] = token, gguf.TokenType.NORMAL
    for i, added in tokenizer.added_tokens_decoder.items():
        types[i] = gguf.TokenType.CONTROL if added.special else gguf.TokenType.USER_DEFINED
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"].get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_bpe_pre(spec.get("pre_tokenizer") or {}))
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name in ("bos", "eos", "pad", "unk"):
        token_id = getattr(tokenizer, f"{name}_token_id", None)
        if token_id is not None:
            getattr(writer, f"add_{name}_token_id")(token_id)
    writer.add_add_bos_token(adds_bos)


# The word-splitting rules of byte-level BPE tokenizers, as llama.cpp names them (`tokenizer.ggml.pre`): a runtime
# that splits the text differently gives the model token sequences it never saw in training.
_WORDS = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|"
_REST = r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_SPLIT_PRE = {_WORDS + r"\p{N}{1,3}" + _REST: "llama-bpe", _WORDS + r"\p{N}" + _REST: "qwen2"}  # Llama 3, Qwen 2


def _bpe_pre(pre: dict) -> str:
    """llama.cpp's name for this pre-tokenizer: GPT-2's own regex (`gpt-2`), digits split one by one before it
    (`smollm`: SmolLM and SmolLM2), or Llama 3's and Qwen 2's split patterns; anything else is refused rather than
    written as a guess."""
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    kinds = [step.get("type") for step in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        name = _SPLIT_PRE.get(steps[0].get("pattern", {}).get("Regex", ""))
        if name:
            return name
    raise ExportError(
        f"--to gguf: this tokenizer's pre-tokenizer ({' + '.join(map(str, kinds))}) has no llama.cpp equivalent "
        "tunesmith knows; export --to merged and convert with llama.cpp's convert_hf_to_gguf.py"
    )


def _hf_metadata(writer, model: nn.Module, arch: str, tokenizer, adds_bos: bool) -> None:
    if arch != "llama":
        raise ExportError(
            f"--to gguf for a {arch} base needs the GGUF it came from (its tokenizer and hyperparameters); this "
            "base is an HF folder"
        )
    writer.add_name(str(getattr(model.config, "_name_or_path", "") or "model"))
    _llama_metadata(writer, model.config)
    _bpe_metadata(writer, tokenizer, model.config.vocab_size, adds_bos)


def write_gguf(
    model: nn.Module,
    source: Path | None,
    out: Path,
    quant: str,
    chat_template: str | None,
    extra: dict[str, str],
    tokenizer=None,
    adds_bos: bool = False,
) -> Path:
    """Write `model` (a causal LM of a supported architecture, merged, any dtype) to `out` in `quant`, with the
    metadata of `source` (the GGUF its base came from), or, with no source, the metadata its HF config and
    `tokenizer` give (llama with a byte-level BPE tokenizer). Written under a temporary name and renamed."""
    import gguf

    if quant not in _QUANTS:
        raise ExportError(f"unknown GGUF quantisation {quant!r} (choose from {', '.join(QUANTS)})")
    arch = gguf_architecture(model)
    spec = _QUANTS[quant]
    staging = out.with_name(f".{out.name}.{os.getpid()}.part")
    try:
        writer = gguf.GGUFWriter(staging, arch)
        if source is not None:
            _copy_metadata(writer, source)
        else:
            _hf_metadata(writer, model, arch, tokenizer, adds_bos)
        writer.add_file_type(spec.file_type)
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if chat_template:
            writer.add_chat_template(chat_template)
        for key, value in extra.items():
            writer.add_string(key, value)
        for name, data in gguf_tensors(model, arch).items():
            array, raw = _encode(name, data, spec)
            writer.add_tensor(name, array, raw_dtype=raw)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        if quant == "q4_k_m":
            _llama_cpp_quantize(staging, spec.file_type)
        staging.rename(out)
    finally:
        staging.unlink(missing_ok=True)
    return out


def _llama_cpp_quantize(path: Path, file_type: int) -> None:
    """Quantise an f16 GGUF in place with llama.cpp's own quantizer (the k-quant mixes are only there)."""
    if not llama_cpp_read.available():
        raise ExportError(
            "q4_k_m needs llama.cpp's quantizer: install llama-cpp-python (make llama-cpp) or export f16 or q8_0"
        )
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = file_type
    target = path.with_name(path.name + ".q")
    try:
        code = llama_cpp.llama_model_quantize(str(path).encode(), str(target).encode(), params)
        if code != 0:
            raise ExportError(f"llama.cpp could not quantise {path.name} to q4_k_m (code {code})")
        target.replace(path)
    finally:
        target.unlink(missing_ok=True)
