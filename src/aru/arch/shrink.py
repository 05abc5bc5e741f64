"""A tiny random copy of a model's config: same structure, small sizes.

The derivation (:mod:`aru.arch.derive`) proves its fold on a model built from this config, so it keeps
everything that decides *which* modules exist and how they connect: the model_type, the number of decoder
layers and every per-layer pattern (``layer_types``, ``mlp_only_layers``, ``first_k_dense_replace``,
hybrid block patterns, sliding windows), MoE/dense mixes, biases, tying, norms, multipliers. It changes
only sizes: the hidden size, heads, head dims, intermediate sizes, experts, ranks, state sizes and the
vocabulary. The sizes are chosen pairwise distinct where they can be (d = 64, intermediate 96, MoE
intermediate 40, ...), so that no layout is ambiguous on the tiny model.
"""

from __future__ import annotations

import math
import re

HIDDEN = 64
VOCAB = 157
NUM_EXPERTS = 6

EXPERT_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_routed_experts")
TOPK_KEYS = ("num_experts_per_tok", "num_experts_per_token", "moe_top_k", "top_k", "moe_k", "experts_per_token")
# key → tiny value, for integer-valued config keys (names as config classes spell them)
SIZE_KEYS: dict[str, int] = {
    **dict.fromkeys(("hidden_size", "n_embd", "d_model", "dim", "embed_dim", "model_dim"), HIDDEN),
    **dict.fromkeys(
        ("intermediate_size", "n_inner", "ffn_dim", "ffn_hidden_size", "intermediate_size_mlp", "ffn_config_size"),
        96,
    ),
    **dict.fromkeys(("moe_intermediate_size", "expert_intermediate_size", "moe_ffn_hidden_size"), 40),
    **dict.fromkeys(
        (
            "shared_expert_intermediate_size",
            "shared_intermediate_size",
            "moe_shared_expert_intermediate_size",
            "shared_expert_ffn_hidden_size",
        ),
        56,
    ),
    **dict.fromkeys(EXPERT_KEYS, NUM_EXPERTS),
    **dict.fromkeys(TOPK_KEYS, 2),
    **dict.fromkeys(("n_group", "num_expert_group", "topk_group"), 1),
    "kv_lora_rank": 16,
    "q_lora_rank": 24,
    "qk_rope_head_dim": 8,
    "qk_nope_head_dim": 8,
    "v_head_dim": 12,
    "qk_head_dim": 16,
    "vocab_size": VOCAB,
    **dict.fromkeys(("mamba_d_state", "ssm_state_size", "state_size", "d_state"), 8),
    **dict.fromkeys(("mamba_dt_rank", "time_step_rank", "dt_rank"), 8),
    **dict.fromkeys(("linear_key_head_dim", "linear_value_head_dim", "linear_head_dim"), 8),
    **dict.fromkeys(("linear_num_key_heads", "linear_num_heads"), 2),
    "linear_num_value_heads": 4,
    "hidden_size_per_layer_input": 8,
    "vocab_size_per_layer_input": VOCAB,
    "global_head_dim": 16,
}
HEADS_KEYS = ("num_attention_heads", "n_head", "n_heads", "num_heads", "attention_heads")
KV_KEYS = ("num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num", "num_global_key_value_heads")
HEAD_DIM_KEYS = ("head_dim", "attention_head_dim", "kv_channels")
TOKEN_KEYS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "decoder_start_token_id")
MAMBA_HEADS = ("mamba_n_heads", "mamba_num_heads")
MAMBA_HEAD_DIM = ("mamba_d_head", "mamba_head_dim")
MAMBA_GROUPS = ("mamba_n_groups", "n_groups")
HEADS, KV_HEADS, HEAD_DIM = 4, 2, 12


def _shrink_heads(cfg: dict) -> None:
    heads_key = next((k for k in HEADS_KEYS if isinstance(cfg.get(k), int)), None)
    if heads_key is None:
        return
    old_heads = cfg[heads_key]
    cfg[heads_key] = HEADS
    for k in KV_KEYS:
        kv = cfg.get(k)
        if isinstance(kv, int) and kv > 0:
            # keep the kind of attention: MHA (kv == heads), MQA (kv == 1), GQA (in between)
            cfg[k] = HEADS if kv >= old_heads else (1 if kv == 1 else KV_HEADS)
    for k in HEAD_DIM_KEYS:
        if isinstance(cfg.get(k), int):
            cfg[k] = HEAD_DIM
    for k in ("num_global_key_value_heads",):
        if isinstance(cfg.get(k), int):
            cfg[k] = KV_HEADS


def _shrink_mamba(cfg: dict) -> None:
    """Mamba-2 mixers need heads · head_dim = expand · d and groups dividing heads."""
    expand = cfg.get("mamba_expand", cfg.get("expand"))
    if not isinstance(expand, int):
        expand = 2
    inner = expand * HIDDEN
    for k in MAMBA_HEAD_DIM:
        if isinstance(cfg.get(k), int):
            cfg[k] = 16
    for k in MAMBA_HEADS:
        if isinstance(cfg.get(k), int):
            cfg[k] = inner // 16
    for k in MAMBA_GROUPS:
        if isinstance(cfg.get(k), int):
            cfg[k] = 1
    if isinstance(cfg.get("mamba_d_ssm"), int):
        cfg["mamba_d_ssm"] = inner
    for k in ("mamba_chunk_size", "chunk_size"):
        if isinstance(cfg.get(k), int) and cfg[k] > 16:
            cfg[k] = 16


def _shrink_mla(raw: dict, cfg: dict) -> None:
    """Multi-head latent attention: head_dim is the rope part, qk_head_dim the nope + rope parts."""
    rope, nope = cfg.get("qk_rope_head_dim"), cfg.get("qk_nope_head_dim")
    if not isinstance(rope, int):
        return
    if isinstance(raw.get("head_dim"), int) and raw["head_dim"] == raw.get("qk_rope_head_dim"):
        cfg["head_dim"] = rope
    if isinstance(cfg.get("qk_head_dim"), int) and isinstance(nope, int):
        cfg["qk_head_dim"] = rope + nope


def _shrink_value(value, tiny: int):
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return tiny
    if isinstance(value, list) and value and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        return [tiny if v else 0 for v in value]  # per-layer sizes: keep which layers have one
    return value


def _fix_tokens(cfg: dict) -> None:
    vocab = cfg.get("vocab_size", VOCAB)
    for k in TOKEN_KEYS:
        v = cfg.get(k)
        if isinstance(v, int) and not 0 <= v < vocab:
            cfg[k] = min(3, vocab - 1)
        elif isinstance(v, list):
            cfg[k] = [x if isinstance(x, int) and 0 <= x < vocab else 2 for x in v]


LAYER_COUNT_KEYS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def _fewer_layers(cfg: dict, max_layers: int) -> None:
    """Keep the first n layers, n ≥ ``max_layers`` and large enough that every per-layer kind listed in the config
    (``layer_types``, block patterns) still occurs; per-layer lists and pattern strings are cut to n."""
    key = next((k for k in LAYER_COUNT_KEYS if isinstance(cfg.get(k), int)), None)
    if key is None or cfg[key] <= max_layers:
        return
    total = cfg[key]
    n = max_layers
    for v in cfg.values():
        if isinstance(v, (list, str)) and len(v) == total and not all(isinstance(x, (int, float)) for x in v):
            kinds = list(dict.fromkeys(v))
            n = max(n, max(list(v).index(k) for k in kinds) + 1)
    n = min(n, total)
    cfg[key] = n
    for k, v in list(cfg.items()):
        if isinstance(v, (list, str)) and len(v) == total:
            cfg[k] = v[:n]
        elif (
            isinstance(v, list)
            and v
            and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
            and (k.endswith("layers") or k.endswith("idxs"))
        ):
            cfg[k] = [x for x in v if x < n]


def shrink_config_dict(raw: dict, max_layers: int | None = None) -> dict:
    """A copy of a config's ``to_dict()`` with small sizes and the same structure (see the module docstring).

    ``max_layers`` (tests only): fewer decoder layers, keeping every per-layer kind the config lists."""
    cfg = {k: v for k, v in raw.items() if k not in ("architectures", "_name_or_path", "transformers_version")}
    if max_layers is not None:
        _fewer_layers(cfg, max_layers)
    for key, tiny in SIZE_KEYS.items():
        if key in cfg:
            cfg[key] = _shrink_value(cfg[key], tiny)
    has_experts = any(isinstance(cfg.get(k), int) and cfg[k] > 1 for k in EXPERT_KEYS)
    for key in TOPK_KEYS:
        if key in cfg and cfg[key] is None and has_experts:
            cfg[key] = 2  # a default of None is filled in from the checkpoint; the tiny copy needs a value
    _shrink_heads(cfg)
    _shrink_mamba(cfg)
    _shrink_mla(raw, cfg)
    _fix_tokens(cfg)
    for k in ("quantization_config",):
        cfg.pop(k, None)
    # learned position tables and rope caches stay small; rope scaling keeps its type
    for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "n_ctx"):
        if isinstance(cfg.get(k), int) and cfg[k] > 4096:
            cfg[k] = 4096
    for k in ("dropout", "attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop"):
        if isinstance(cfg.get(k), float):
            cfg[k] = 0.0
    for k, v in list(cfg.items()):
        if re.fullmatch(r".*dropout.*|.*_pdrop", k) and isinstance(v, float):
            cfg[k] = 0.0
    return cfg


def signature(cfg: dict) -> str:
    """A stable text of a shrunk config (its cache key part)."""
    import json

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return str(v)
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in sorted(v.items())}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(cfg), sort_keys=True, default=str)
