"""Check an edited checkpoint against its base: the hooked original must equal the folded copy.

The base model runs with hooks that project every writer's output (:func:`aru.model_edit.projection_hooks`);
the edited model runs with none. Both are loaded in float32 by plain transformers. Reported:

- ``max_abs_dlogit``: max |logit_edited − logit_hooked| over prompts, positions and vocabulary, and
  ``rel_dlogit`` = that / max |logit_hooked|;
- ``leak``: max |Q h| / |h| over the decoder-layer outputs h of the edited model that every planned
  writer feeds (a missed writer shows as ≥ 1e-2; a complete fold is ~1e-7 in float32), next to the base
  model's own value at the same positions.

The edit settings (layers, strength, source layer, ...) are read from the edited folder's ``aru.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aru.directions import Directions, load_directions
from aru.errors import ProvenanceError
from aru.lora import is_adapter
from aru.model_edit import EditPlan, make_plan, projection_hooks
from aru.provenance import file_sha256, read_provenance, recorded_directions

# max |Δlogit| / max |logit| per checkpoint dtype: float32 is exact up to rounding; bf16/f16 round each
# folded weight once
TOLERANCE = {torch.float32: 1e-4, torch.float64: 1e-4, torch.float16: 1e-2, torch.bfloat16: 3e-2}


@dataclass
class VerifyResult:
    edited: str
    base: str
    max_abs_dlogit: float
    logit_scale: float
    rel_dlogit: float
    tol: float
    leak: float | None
    base_leak: float | None
    leak_tol: float
    exact: bool
    checkpoint_dtype: str
    n_tokens: int
    # PEFT adapters: base + adapter merged with merge_and_unload, against the same hooked logits
    merged_rel_dlogit: float | None = None
    rel_dlogit_vs_base: float | None = None  # max |logit_edited − logit_unedited| / max |logit_hooked|

    @property
    def within_tolerance(self) -> bool:
        leak_ok = self.leak is None or self.leak <= self.leak_tol
        merged_ok = self.merged_rel_dlogit is None or self.merged_rel_dlogit <= self.tol
        return self.rel_dlogit <= self.tol and leak_ok and merged_ok

    @property
    def passed(self) -> bool:
        """Within tolerance, for exact and approximate (post-norm) edits alike: an approximate fold beyond the
        tolerance is not the edit that was scored with hooks (``aru verify --accept-approximate`` ships it)."""
        return self.within_tolerance

    def to_dict(self) -> dict:
        return {**asdict(self), "within_tolerance": self.within_tolerance, "passed": self.passed}


def load_float32(folder: str | Path, model_type: str):
    """A checkpoint in float32 and eval mode, as verification compares it (MoE experts on the eager kernel)."""
    from transformers import AutoModelForCausalLM

    from aru.arch import get_spec
    from aru.checkpoint import load_config

    raw = load_config(Path(folder), check_arch=False)[0]
    kw = {"experts_implementation": "eager"} if get_spec(model_type, raw).has_experts else {}
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw).eval()


def _checkpoint_dtype(folder: Path) -> torch.dtype:
    from aru.checkpoint import list_shards
    from aru.lora import ADAPTER_WEIGHTS
    from aru.safetensors_io import DTYPES, read_header

    shards = [ADAPTER_WEIGHTS] if is_adapter(folder) else list_shards(folder)[0]
    dtypes = [t.dtype for t in read_header(folder / shards[0]).tensors.values()]
    floats = [DTYPES[d] for d in dtypes if d in ("F32", "F16", "BF16", "F64")]
    return max(set(floats), key=floats.count) if floats else torch.float32


def plan_from_provenance(record: dict, directions: Directions, num_layers: int) -> EditPlan:
    """Re-create the :class:`EditPlan` an edit used, from its ``aru.json`` settings."""
    s = record.get("settings", {})
    return make_plan(
        directions,
        num_layers,
        layers=s.get("layers"),
        source_layer=s.get("source_layer"),
        strength=float(s.get("strength", 1.0)),
        per_layer=bool(s.get("per_layer", False)),
        k=s.get("k"),
    )


def _covered_layers(plan: EditPlan) -> list[int]:
    """Decoder layers whose outputs should hold no span(Q): a single basis on the embeddings and layers 0..j."""
    if plan.embed is None or plan.info.get("per_layer") or plan.strength != 1.0:
        return []
    out = []
    for i in range(len(plan.layers) + 1):
        if i in plan.layers and plan.layers[i] is plan.embed:
            out.append(i)
        else:
            break
    return out


def _check_adapter_base(record: dict, base_folder: Path, adapter: Path) -> None:
    """An adapter is only exact on the base it was exported from: compare the recorded shard hashes."""
    recorded = record["input"].get("files") or {}
    for name, sha in recorded.items():
        path = base_folder / name
        if not path.is_file() or file_sha256(path) != sha:
            raise ProvenanceError(
                f"{str(base_folder)!r} is not the base {str(adapter)!r} was exported from ({name} differs from "
                "aru.json); pass the original model with --base"
            )


@torch.no_grad()
def verify_edit(
    edited: str | Path,
    base: str | Path | None = None,
    directions: str | Path | Directions | None = None,
    *,
    n_prompts: int = 4,
    seq_len: int = 24,
    seed: int = 0,
    tol: float | None = None,
    input_ids: torch.Tensor | None = None,
) -> VerifyResult:
    """Compare ``edited`` (an aru output folder) with ``base`` run under projection hooks.

    ``edited`` may be a PEFT adapter folder (``aru edit --format peft``): then the edited model is ``base`` with
    the adapter attached by PEFT, and also merged into it (``merged_rel_dlogit``).

    ``base`` and ``directions`` default to the ones recorded in ``aru.json``. ``input_ids`` (batch, seq)
    default to ``n_prompts`` reproducible random token sequences of ``seq_len`` tokens.
    """
    from aru.checkpoint import load_config, resolve_model

    edited = Path(edited)
    record = read_provenance(edited)
    base = base or record["input"].get("path") or record["input"].get("repo_id")
    if base is None:
        raise ProvenanceError(f"{str(edited)!r}: aru.json names no input model; pass --base MODEL")
    # the recorded revision belongs to the recorded Hub id, not to a local folder standing in for it
    revision = record["input"].get("revision") if str(base) == record["input"].get("repo_id") else None
    base_folder, _, _ = resolve_model(base, revision=revision)
    if directions is None:
        directions = recorded_directions(edited, record)
        if directions is None:
            raise ProvenanceError(f"{str(edited)!r}: aru.json names no directions file; pass --directions D")
    if not isinstance(directions, Directions):
        recorded = record["directions"].get("sha256")
        if recorded and file_sha256(directions) != recorded:
            raise ProvenanceError(
                f"directions file {str(directions)!r} is not the one {str(edited)!r} was edited with "
                "(sha256 differs from aru.json); pass the original file, or none to use the copy in the output"
            )
        directions = load_directions(directions)

    _, model_type, _, _ = load_config(base_folder)
    adapter = is_adapter(edited)
    if adapter:
        _check_adapter_base(record, base_folder, edited)
    base_model = load_float32(base_folder, model_type)
    if adapter:
        from aru.lora_peft import attach_adapter

        edited_model = attach_adapter(load_float32(base_folder, model_type), edited)
    else:
        edited_model = load_float32(edited, model_type)
    plan = plan_from_provenance(record, directions, base_model.config.num_hidden_layers)
    if input_ids is None:
        gen = torch.Generator().manual_seed(seed)
        vocab = base_model.config.vocab_size
        input_ids = torch.randint(0, vocab, (n_prompts, seq_len), generator=gen)

    with projection_hooks(base_model, plan):
        hooked = base_model(input_ids).logits.float()
    out = edited_model(input_ids, output_hidden_states=True)
    logits = out.logits.float()
    max_abs = float((logits - hooked).abs().max())
    scale = float(hooked.abs().max())

    leak = base_leak = None
    covered = _covered_layers(plan)
    # hidden_states[i + 1] is decoder layer i's output, except the last entry, which is after the final norm
    covered = [i for i in covered if i + 1 < len(out.hidden_states) - 1]
    if covered:
        q = plan.embed.double()
        base_hs = base_model(input_ids, output_hidden_states=True).hidden_states

        def ratio(h):
            h = h.double().reshape(-1, h.shape[-1])
            return float(((h @ q.T).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-30)).max())

        leak = max(ratio(out.hidden_states[i + 1]) for i in covered)
        base_leak = max(ratio(base_hs[i + 1]) for i in covered)

    vs_base = float((base_model(input_ids).logits.float() - logits).abs().max()) / max(scale, 1e-30)
    merged_rel = None
    if adapter:
        del edited_model
        merged = attach_adapter(load_float32(base_folder, model_type), edited, merge=True)
        merged_rel = float((merged(input_ids).logits.float() - hooked).abs().max()) / max(scale, 1e-30)
    ckpt_dtype = _checkpoint_dtype(edited)
    tol = TOLERANCE.get(ckpt_dtype, 1e-4) if tol is None else tol
    return VerifyResult(
        edited=str(edited),
        base=str(base),
        max_abs_dlogit=max_abs,
        logit_scale=scale,
        rel_dlogit=max_abs / max(scale, 1e-30),
        tol=tol,
        leak=leak,
        base_leak=base_leak,
        leak_tol=max(tol, 1e-4),
        exact=bool(record.get("settings", {}).get("exact", True)),
        checkpoint_dtype=str(ckpt_dtype).replace("torch.", ""),
        n_tokens=int(input_ids.numel()),
        merged_rel_dlogit=merged_rel,
        rel_dlogit_vs_base=vs_base,
    )
