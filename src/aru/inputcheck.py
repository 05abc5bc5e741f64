"""Checks of aru's inputs against each other, before anything is written, each error naming the value and the fix.

- the device exists (``--device cuda`` on a machine without CUDA, also from a recipe);
- a directions file fits the model: its residual indices exist in it, it was fitted on the same ``model_type``, and a
  hidden-size disagreement is blamed on whichever side is wrong (config, weights or directions);
- the checkpoint holds no NaN already (in any float tensor: writers and the tensors copied as they are);
- too few prompts per class make degenerate directions (a warning with the numbers);
- text files decode as UTF-8 (the error names the file and the byte).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

from aru.errors import AruWarning, CheckpointError, DirectionsError

#: fewer prompts than this in a class make a direction that is mostly noise (warned about, not refused)
MIN_PROMPTS = 5
FLOAT_DTYPES = {"F64", "F32", "F16", "BF16"}


def check_device(device: str | None, *, where: str = "--device") -> None:
    """Refuse a device this machine does not have (torch's own error is an AssertionError with no fix)."""
    if device is None:
        return
    import torch

    name = str(device).split(":")[0].lower()
    if name == "cuda" and not torch.cuda.is_available():
        why = "this torch has no CUDA support" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ValueError(
            f"{where} {device!r}: CUDA is not available on this machine ({why}; torch {torch.__version__}). "
            f"Use {where} cpu, or install a CUDA build of torch on a machine with a GPU"
        )
    if name == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"{where} {device!r}: Apple's MPS is not available on this machine; use {where} cpu")
    if name not in {"cpu", "cuda", "mps", "xpu", "meta"}:
        raise ValueError(f"{where} {device!r} is not a device torch knows; use cpu or cuda (e.g. cuda:0)")


def check_tokenizer_path(tokenizer: str | None) -> None:
    """A ``--tokenizer`` written as a path must be an existing folder (else transformers calls it a bad repo id)."""
    if tokenizer is None:
        return
    s = str(tokenizer)
    if s.startswith((".", "/", "~")) or s.count("/") > 1:
        path = Path(s).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(
                f"--tokenizer {s!r}: no such folder ({str(path.resolve())!r}); pass the folder holding "
                "tokenizer.json / tokenizer_config.json, or a Hub id like org/name"
            )


def parse_source_layer(value: str | None) -> int | str | None:
    """``--source-layer``: None, ``"all"`` or a residual index."""
    if value is None or value == "all":
        return value
    try:
        return int(value)
    except ValueError:
        raise ValueError(
            f"--source-layer {value!r} is not a layer: give a residual index like 6 (see the layers in aru fit's "
            "table) or 'all'"
        ) from None


def read_text(path: str | Path, *, what: str = "file") -> str:
    """A UTF-8 text file; a decoding error names the file, the byte offset and the fix."""
    path = Path(path)
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ValueError(
            f"{what} {str(path)!r} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}, line "
            f"{line}); re-save it as UTF-8, e.g. iconv -f latin1 -t utf-8 {path.name} > {path.stem}.utf8{path.suffix}"
        ) from None


def check_directions_for_model(directions, *, model: str, model_type: str, num_layers: int) -> None:
    """Refuse a directions file fitted on another model: residual indices beyond this model's, or another
    ``model_type`` recorded in its metadata."""
    indices = sorted(k for k in directions.bases if isinstance(k, int))
    beyond = [i for i in indices if not 0 <= i <= num_layers]
    if beyond:
        raise DirectionsError(
            f"the directions file has bases at residual indices {beyond}, but {model!r} has {num_layers} decoder "
            f"layers (indices 0..{num_layers}): it was fitted on another model. Fit directions on this one with: "
            f"aru fit {model} ..."
        )
    fitted = (directions.metadata or {}).get("model_type")
    if fitted and fitted != model_type:
        raise DirectionsError(
            f"the directions were fitted on a {fitted!r} model, but {model!r} is a {model_type!r} model; directions "
            f"do not carry over between architectures. Fit them on this model with: aru fit {model} ..."
        )


def blame_hidden_size(directions, *, model: str, hidden: int, headers: dict, spec) -> None:
    """Directions and config disagree on the hidden size: say which side the weights agree with."""
    width = None
    for h in headers.values():
        for name, t in h.tensors.items():
            hit = spec.match(name)
            if hit is not None and hit[0].role == "embed" and t.shape:
                width = t.shape[-1]
    if width is not None and width != hidden:
        raise CheckpointError(
            f"{model!r}: config.json says hidden size {hidden}, but its weights have width {width} (the token "
            "embedding): the config does not belong to these weights. Restore the checkpoint's own config.json"
        )
    raise DirectionsError(
        f"the directions have dimension {directions.hidden_size} but {model!r} has hidden size {hidden}; "
        "they were fitted on another model: fit them on this one with: aru fit"
    )


def check_finite(folder: Path, headers: dict, *, skip: frozenset | set = frozenset(), chunk: int = 1 << 22) -> None:
    """Refuse a checkpoint that already holds NaN in a float tensor the editor copies as it is (the writers, in
    ``skip``, are checked by the fold itself)."""
    import torch
    from safetensors import safe_open

    for shard, h in headers.items():
        with safe_open(str(folder / shard), framework="pt") as f:
            for name, t in h.tensors.items():
                if t.dtype not in FLOAT_DTYPES or not t.nbytes or name in skip:
                    continue
                sl = f.get_slice(name)
                rows = t.shape[0] if t.shape else 1
                per_row = max(1, math.prod(t.shape[1:])) if t.shape else 1
                step = max(1, chunk // per_row)
                bad = 0
                for i in range(0, rows, step):
                    x = sl[i : i + step] if t.shape else f.get_tensor(name)
                    bad += int(torch.isnan(x).sum())
                if bad:
                    raise CheckpointError(
                        f"{name} in {str(folder / shard)!r} already holds {bad} NaN values, before any edit: the "
                        "input checkpoint is corrupt. Re-download or re-save it; aru never writes non-finite weights"
                    )


def warn_few_prompts(n_bad: int, n_good: int, *, k: int = 1) -> None:
    """Too few prompts per class: the fitted directions are degenerate (a warning, with the numbers)."""
    need = max(MIN_PROMPTS, 2 * k)
    if min(n_bad, n_good) < need:
        warnings.warn(
            f"only {n_bad} X− (--bad) and {n_good} X+ (--good) prompts: directions from so few points are degenerate "
            f"(the held-out scores mean little); use at least {need} per class, better 50+",
            AruWarning,
            stacklevel=2,
        )


def check_recipe_files(recipe) -> None:
    """Every local file a recipe names exists (``aru run --check`` must not call a recipe valid without them)."""
    named = [("prompts.bad", recipe.prompts.bad), ("prompts.good", recipe.prompts.good)]
    named.append(("eval.retain", recipe.eval.retain))
    for key, value in named:
        if not value or str(value).startswith("hf://"):
            continue
        path = Path(recipe.path(value)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(
                f"{key} = {value!r}: {str(path)!r} does not exist (paths are relative to the recipe's folder); "
                "fix the path or create the file"
            )


#: config.json sizes that must be positive whole numbers (transformers' own error names neither file nor fix)
SIZE_KEYS = ("hidden_size", "n_embd", "d_model", "num_hidden_layers", "n_layer", "num_layers", "intermediate_size",
             "num_attention_heads", "num_key_value_heads", "vocab_size")  # fmt: skip


def check_config_numbers(raw: dict, path: str | Path) -> None:
    """Refuse a config.json whose sizes are not positive whole numbers, naming the key, the value and the file."""
    for key in SIZE_KEYS:
        value = raw.get(key)
        if key in raw and value is not None and (type(value) is not int or value <= 0):
            raise CheckpointError(f"{str(path)!r} has {key} = {value!r}: it must be a positive whole number")


def check_model_folder(name_or_path: str | Path) -> None:
    """The checks of :func:`check_config_numbers` for a local model folder (Hub ids are left to the download)."""
    import json

    path = Path(str(name_or_path)).expanduser() / "config.json"
    if path.is_file():
        try:
            raw = json.loads(read_text(path, what="config"))
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{str(path)!r} is not valid JSON ({exc}); restore the checkpoint's config") from exc
        if isinstance(raw, dict):
            check_config_numbers(raw, path)
