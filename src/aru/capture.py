"""Residual-stream activation capture with a truncated forward pass and streaming float64 statistics.

**Layer convention.** A model with L decoder layers has L + 1 capture points ℓ = 0..L:

- ℓ < L: the *input* of decoder layer ℓ, i.e. the residual stream after ℓ layers (ℓ = 0 is the embedding output,
  including any embedding scale the model applies); this equals ``output_hidden_states[ℓ]``;
- ℓ = L: the *output* of the last decoder layer, before the final norm (``output_hidden_states[L]`` is after the
  norm in transformers, so it differs there).

Negative layers count from the end: −1 is L, −2 is L − 1.

**Positions** (``position=``):

- ``"last"``: the last prompt token (one sample per prompt);
- ``"mean:N"``: the mean of the last N prompt tokens (one sample per prompt; all tokens if the prompt is shorter);
- ``"all"``: every post-instruction token (the tokens the chat template puts after the user's message, e.g.
  ``<|assistant|>``; see :func:`aru.prompts.post_instruction_length`), one sample per token; with no chat template
  (raw prompts) every prompt token.

Positions are taken from the attention mask and position ids are computed from it, so left and right padding give
the same activations.

**Speed.** Prompts are sorted by length and batched; the forward runs under ``torch.inference_mode`` on the base
model (no lm_head) and stops, by raising from a hook, as soon as the deepest requested layer is captured; hooks are
removed in ``finally``.
"""

from __future__ import annotations

import inspect
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aru.errors import AruWarning, CheckpointError
from aru.prompts import post_instruction_length, tokenize_formatted
from aru.stats import StreamingStats

OVERFLOW = ("truncate", "skip", "error")
LAYER_LISTS = ("layers", "h", "blocks")
ALL_LAYERS = "all"


class _Stop(Exception):
    """Raised from a hook once the deepest requested layer has been captured."""


@dataclass(frozen=True)
class Position:
    """Which token positions of each prompt are captured: ``kind`` in last / mean / all."""

    kind: str
    n: int = 1

    def __str__(self) -> str:
        return {"last": "last", "mean": f"mean:{self.n}", "all": "all"}[self.kind]


def parse_position(spec: str | Position) -> Position:
    """``"last"``, ``"mean:N"`` (N ≥ 1) or ``"all"`` as a :class:`Position`."""
    if isinstance(spec, Position):
        return spec
    s = str(spec).strip().lower()
    if s == "last":
        return Position("last")
    if s in ("all", "post-instruction"):
        return Position("all")
    if s.startswith("mean:"):
        try:
            n = int(s.split(":", 1)[1])
        except ValueError:
            n = 0
        if n >= 1:
            return Position("mean", n)
    raise ValueError(f"position={spec!r}; use 'last', 'mean:N' (N >= 1, e.g. mean:4) or 'all'")


@dataclass
class CaptureResult:
    """What :func:`capture` saw: per-layer streaming statistics and, with ``keep=True``, the activations.

    ``activations[ℓ]`` is (n_samples, d) float32 on the CPU, in input-prompt order; ``sample_prompt`` (n_samples,)
    gives each sample's prompt index (the identity for ``last`` / ``mean:N``).
    """

    layers: list[int]
    position: str
    hidden_size: int
    num_layers: int
    stats: dict[int, StreamingStats]
    n_prompts: int
    n_tokens: int
    activations: dict[int, torch.Tensor] | None = None
    sample_prompt: torch.Tensor | None = None
    truncated: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


def decoder_layers(model) -> tuple[torch.nn.Module, torch.nn.ModuleList]:
    """(base model, its decoder layers) of a causal LM: the ``ModuleList`` of ``config.num_hidden_layers`` blocks
    under ``model.get_decoder()`` (``layers``, ``h`` or ``blocks``)."""
    base = model.get_decoder() if hasattr(model, "get_decoder") else model
    n = _num_layers_config(model)
    for owner in (base, getattr(base, "model", None), getattr(base, "transformer", None)):
        if owner is None:
            continue
        for name in LAYER_LISTS:
            mods = getattr(owner, name, None)
            if isinstance(mods, torch.nn.ModuleList) and (n is None or len(mods) == n):
                return owner, mods
    raise ValueError(
        f"cannot find the decoder layers of {type(model).__name__} (looked for a ModuleList named {LAYER_LISTS} "
        "under model.get_decoder()); aru captures from decoder-only causal LMs"
    )


def _num_layers_config(model) -> int | None:
    cfg = getattr(model, "config", None)
    cfg = cfg.get_text_config() if cfg is not None and hasattr(cfg, "get_text_config") else cfg
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return None


def resolve_layers(layers: Sequence[int] | int | None, num_layers: int) -> list[int]:
    """Sorted unique capture points in 0..L (negative counts from the end; None = 1..L; "all" = 0..L)."""
    if isinstance(layers, str):
        layers = parse_layers(layers)
    if layers is None:
        return list(range(1, num_layers + 1))
    if isinstance(layers, int):
        layers = [layers]
    if ALL_LAYERS in layers:
        return list(range(num_layers + 1))
    out = set()
    for ly in layers:
        if isinstance(ly, bool) or not isinstance(ly, int):
            raise TypeError(f"layer {ly!r} must be an int")
        idx = ly + num_layers + 1 if ly < 0 else ly
        if not 0 <= idx <= num_layers:
            raise ValueError(
                f"layer {ly} is out of range: the model has {num_layers} decoder layers, so layers are "
                f"0..{num_layers} (ℓ = input of decoder layer ℓ, {num_layers} = output of the last one) or "
                f"-{num_layers + 1}..-1"
            )
        out.add(idx)
    if not out:
        raise ValueError("no layers requested; pass at least one layer")
    return sorted(out)


def parse_layers(spec: str | None) -> list[int] | None:
    """Layers from text: ``"1,2,5"``, ranges ``"2-6"``, negatives ``"-1"``, ``"all"`` (every capture point 0..L,
    returned as the range -L-1..-1 resolved later), or None/``""`` for the default 1..L."""
    if spec is None or not str(spec).strip():
        return None
    s = str(spec).strip().lower()
    if s == "all":
        return [ALL_LAYERS]
    out: list[int] = []
    for part in s.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part[0] + part[1:].split("-", 1)[0], part[1:].split("-", 1)[1]
                a, b = int(lo), int(hi)
                if b < a:
                    raise IndexError(f"layers={spec!r}: the range {part!r} is reversed; write it as '{b}-{a}'")
                out.extend(range(a, b + 1))
            else:
                out.append(int(part))
        except IndexError as exc:
            raise ValueError(str(exc)) from None
        except ValueError:
            raise ValueError(
                f"layers={spec!r}: use comma-separated layers and ranges, e.g. '4', '2,5' or '2-6', or 'all'"
            ) from None
    return out


def max_context(model, tokenizer=None) -> int | None:
    """The longest prompt the model takes: ``config.max_position_embeddings`` (or ``n_positions``), capped by the
    tokenizer's ``model_max_length`` when that is a real limit."""
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    limits = [getattr(cfg, k, None) for k in ("max_position_embeddings", "n_positions")]
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and tok_max < 10**9:
        limits.append(tok_max)
    limits = [v for v in limits if isinstance(v, int) and v > 0]
    return min(limits) if limits else None


def _hidden_size(model) -> int:
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for key in ("hidden_size", "n_embd", "d_model"):
        v = getattr(cfg, key, None)
        if isinstance(v, int):
            return v
    return model.get_input_embeddings().weight.shape[1]


def check_tokenizer(model, tokenizer) -> None:
    """Raise ``ValueError`` if the tokenizer has more tokens than the model's embedding has rows; warn
    (:class:`AruWarning`) if its BOS / EOS / PAD ids differ from the ones in the model's config."""
    rows = model.get_input_embeddings().weight.shape[0]
    try:
        n_tok = len(tokenizer)
    except TypeError:
        n_tok = None
    name = getattr(tokenizer, "name_or_path", "")
    if n_tok is not None and n_tok > rows:
        raise ValueError(
            f"the tokenizer {name!r} does not match the model: it has {n_tok} tokens but the model's embedding has "
            f"{rows} rows; load the tokenizer from the model's own checkpoint"
        )
    cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for kind in ("bos", "eos", "pad"):
        want = getattr(cfg, f"{kind}_token_id", None)
        have = getattr(tokenizer, f"{kind}_token_id", None)
        wanted = set(want) if isinstance(want, (list, tuple)) else {want}
        if want is not None and have is not None and have not in wanted:
            warnings.warn(
                f"the tokenizer's {kind} token id is {have} but the model's config says {want}; check that "
                f"{name!r} is the model's own tokenizer",
                AruWarning,
                stacklevel=3,
            )


def _input_device(model) -> torch.device:
    """Where the input ids go: the embedding's device, or for an accelerate-offloaded embedding (meta weights) the
    device its hook computes on (``hf_device_map``: an int is a CUDA index, ``"cpu"``/``"disk"`` run on the CPU)."""
    emb = model.get_input_embeddings()
    if emb.weight.device.type != "meta":
        return emb.weight.device
    device_map = getattr(model, "hf_device_map", None) or {}
    name = next((n for n, m in model.named_modules() if m is emb), "")
    for key in sorted(device_map, key=len, reverse=True):
        if key == "" or name == key or name.startswith(key + "."):
            where = device_map[key]
            if isinstance(where, int):
                return torch.device("cuda", where)
            return torch.device("cpu" if where in ("cpu", "disk") else where)
    return torch.device("cpu")


@torch.inference_mode()
def capture(
    model,
    tokenizer,
    texts: Sequence[str],
    layers: Sequence[int] | int | None = None,
    *,
    position: str | Position = "last",
    batch_size: int = 16,
    keep: bool = False,
    moments: bool = True,
    overflow: str = "truncate",
    max_length: int | None = None,
    padding_side: str | None = None,
    post_tokens: int | None = None,
    progress: bool | str = False,
) -> CaptureResult:
    """Capture residual-stream activations of formatted prompts ``texts`` at ``layers`` (see the module docstring
    for the layer and position conventions) and accumulate per-layer float64 statistics.

    ``texts`` are tokenized with :func:`aru.prompts.tokenize_formatted` (one BOS). Prompts longer than
    ``max_length`` (default: :func:`max_context`) are truncated from the left with an :class:`AruWarning`
    (``overflow="truncate"``), dropped with a warning (``"skip"``) or rejected (``"error"``). ``keep=True`` also
    returns the activations; ``moments=False`` keeps means only (no d×d matrices). ``post_tokens`` overrides the
    number of post-instruction tokens for ``position="all"``. ``progress``: a tqdm bar on stderr (a string is its
    description).
    """
    pos = parse_position(position)
    if overflow not in OVERFLOW:
        raise ValueError(f"overflow={overflow!r}; use one of {OVERFLOW}")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    if not texts:
        raise ValueError("no prompts to capture; pass at least one prompt")
    base, blocks = decoder_layers(model)
    num_layers = len(blocks)
    layer_list = resolve_layers(layers, num_layers)
    hidden = _hidden_size(model)
    vocab_rows = model.get_input_embeddings().weight.shape[0]

    check_tokenizer(model, tokenizer)
    ids = tokenize_formatted(tokenizer, texts)
    bad_ids = [(i, max(t)) for i, t in enumerate(ids) if t and max(t) >= vocab_rows]
    if bad_ids:
        i, tid = bad_ids[0]
        raise ValueError(
            f"the tokenizer {getattr(tokenizer, 'name_or_path', '')!r} does not match the model: prompt {i} has "
            f"token id {tid} but the model's embedding has {vocab_rows} rows; load the tokenizer from the model's "
            "own checkpoint"
        )
    limit = max_length if max_length is not None else max_context(model, tokenizer)
    truncated, skipped = [], []
    if limit is not None:
        for i, t in enumerate(ids):
            if len(t) > limit:
                if overflow == "error":
                    raise ValueError(
                        f"prompt {i} has {len(t)} tokens, more than the model's context of {limit}; shorten it or "
                        "use overflow='truncate' / 'skip'"
                    )
                (truncated if overflow == "truncate" else skipped).append(i)
        if truncated:
            warnings.warn(
                f"{len(truncated)} prompt(s) (first: {truncated[0]}) are longer than the model's context of {limit} "
                "tokens and were truncated from the left",
                AruWarning,
                stacklevel=2,
            )
            for i in truncated:
                ids[i] = ids[i][-limit:]
        if skipped:
            warnings.warn(
                f"{len(skipped)} prompt(s) (first: {skipped[0]}) are longer than the model's context of {limit} "
                "tokens and were skipped",
                AruWarning,
                stacklevel=2,
            )
    empty = [i for i, t in enumerate(ids) if not t]
    if empty:
        raise ValueError(f"prompt {empty[0]} tokenizes to nothing; remove empty prompts")
    dropped = set(skipped)
    order = sorted((i for i in range(len(ids)) if i not in dropped), key=lambda i: -len(ids[i]))
    if not order:
        raise ValueError("every prompt was skipped as too long; shorten them or use overflow='truncate'")

    if pos.kind == "all":
        n_post = post_tokens if post_tokens is not None else post_instruction_length(tokenizer)
        take_last = n_post if n_post > 0 else None
    elif pos.kind == "mean":
        take_last = pos.n
    else:
        take_last = 1

    side = padding_side or getattr(tokenizer, "padding_side", None) or "right"
    pad_id = getattr(tokenizer, "pad_token_id", None)
    pad_id = 0 if pad_id is None else pad_id
    device = _input_device(model)
    takes_pos = "position_ids" in inspect.signature(base.forward).parameters

    stats = {ly: StreamingStats(hidden, moments) for ly in layer_list}
    kept: dict[int, list[tuple[int, torch.Tensor]]] = {ly: [] for ly in layer_list}
    kept_prompt: list[tuple[int, torch.Tensor]] = []
    grabbed: dict[int, torch.Tensor] = {}
    deepest = layer_list[-1]
    handles = []

    def pre_hook(ly):
        def hook(_mod, args, kwargs):
            grabbed[ly] = args[0] if args else kwargs["hidden_states"]
            if ly == deepest:
                raise _Stop

        return hook

    def out_hook(_mod, _args, output):
        grabbed[num_layers] = output[0] if isinstance(output, tuple) else output
        raise _Stop

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=len(order), desc=progress if isinstance(progress, str) else "capture", unit="prompt", file=sys.stderr
        )
    n_tokens = 0
    try:
        for ly in layer_list:
            if ly < num_layers:
                handles.append(blocks[ly].register_forward_pre_hook(pre_hook(ly), with_kwargs=True))
            else:
                handles.append(blocks[num_layers - 1].register_forward_hook(out_hook))
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(ids[i]) for i in chunk)
            input_ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for r, i in enumerate(chunk):
                t = torch.tensor(ids[i], dtype=torch.long)
                if side == "left":
                    input_ids[r, width - len(t) :], mask[r, width - len(t) :] = t, 1
                else:
                    input_ids[r, : len(t)], mask[r, : len(t)] = t, 1
            n_tokens += int(mask.sum())
            kwargs = {"input_ids": input_ids.to(device), "attention_mask": mask.to(device), "use_cache": False}
            if takes_pos:
                kwargs["position_ids"] = (mask.cumsum(-1) - 1).clamp(min=0).to(device)
            grabbed.clear()
            try:
                base(**kwargs)
            except _Stop:
                pass
            missing = [ly for ly in layer_list if ly not in grabbed]
            if missing:
                raise RuntimeError(f"layers {missing} were not reached by the forward pass")  # internal invariant
            # select[b, s]: the positions this batch contributes (among the last `take_last` real tokens)
            from_end = mask.flip(-1).cumsum(-1).flip(-1)  # (batch, seq): real tokens at or after s
            select = mask.bool() if take_last is None else mask.bool() & (from_end <= take_last)
            for ly in layer_list:
                h = grabbed[ly]  # (batch, seq, d)
                sel = select.to(h.device)
                if pos.kind == "all":
                    x = h[sel]  # (n_selected, d), row-major: prompt by prompt
                elif take_last == 1:
                    x = h[sel]  # (batch, d): exactly one selected position per prompt
                else:
                    w = sel.to(torch.float32)
                    x = (h.float() * w[..., None]).sum(1) / w.sum(1, keepdim=True)  # (batch, d)
                stats[ly].update(x)
                if keep:
                    x32 = x.float().cpu()
                    if pos.kind == "all":
                        counts = select.sum(1).tolist()
                        for r, part in zip(chunk, x32.split(counts), strict=True):
                            kept[ly].append((r, part))
                    else:
                        kept[ly].extend((r, x32[j : j + 1]) for j, r in enumerate(chunk))
            if keep:
                counts = select.sum(1).tolist() if pos.kind == "all" else [1] * len(chunk)
                for r, c in zip(chunk, counts, strict=True):
                    kept_prompt.append((r, torch.full((c,), r, dtype=torch.long)))
            if bar is not None:
                bar.update(len(chunk))
    finally:
        for h in handles:
            h.remove()
        grabbed.clear()
        if bar is not None:
            bar.close()

    activations = sample_prompt = None
    if keep:
        activations = {ly: torch.cat([t for _, t in sorted(v, key=lambda p: p[0])]) for ly, v in kept.items()}
        sample_prompt = torch.cat([t for _, t in sorted(kept_prompt, key=lambda p: p[0])])
    return CaptureResult(
        layers=layer_list,
        position=str(pos),
        hidden_size=hidden,
        num_layers=num_layers,
        stats={ly: s.to("cpu") for ly, s in stats.items()},
        n_prompts=len(order),
        n_tokens=n_tokens,
        activations=activations,
        sample_prompt=sample_prompt,
        truncated=truncated,
        skipped=skipped,
    )


def load_model(
    name_or_path: str,
    *,
    tokenizer: str | None = None,
    dtype: str | torch.dtype = "auto",
    device: str | None = None,
    device_map=None,
):
    """(model, tokenizer) from a local folder or a Hub id, in eval mode; the tokenizer from ``tokenizer`` if given,
    else from the model's own folder. ``device_map`` (e.g. ``"auto"``) spreads a model larger than one device with
    accelerate; otherwise the model is moved to ``device`` (default CPU)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from aru.inputcheck import check_device, check_model_folder, check_tokenizer_path

    check_device(device)
    check_tokenizer_path(tokenizer)
    check_model_folder(name_or_path)
    if isinstance(dtype, str) and dtype != "auto":
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"dtype={dtype!r}; use auto, float32, bfloat16 or float16")
        dtype = getattr(torch, dtype)
    kwargs = {"dtype": dtype}
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        model = AutoModelForCausalLM.from_pretrained(str(name_or_path), **kwargs)
        tok = AutoTokenizer.from_pretrained(str(tokenizer or name_or_path))
    except OSError as exc:  # not a folder, not on the Hub (or offline), missing files
        where = "the local folder" if Path(str(name_or_path)).is_dir() else "a local folder or the Hub"
        raise CheckpointError(
            f"cannot load model {str(name_or_path)!r} (tokenizer {str(tokenizer or name_or_path)!r}) from {where}: "
            f"{str(exc).splitlines()[0]}; pass a model folder with config.json and weights, or a Hub id"
        ) from exc
    if device_map is None and device is not None:
        model.to(device)
    return model.eval(), tok
