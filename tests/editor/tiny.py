"""Tiny random models, one per supported model_type, built from configs (no download)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

from aru.arch import get_spec

HIDDEN = 32
COMMON = dict(
    hidden_size=HIDDEN,
    intermediate_size=48,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    vocab_size=101,
    max_position_embeddings=64,
    pad_token_id=0,
    bos_token_id=1,
    eos_token_id=2,
)
# per model_type: extra / overriding config keys (names as each config class spells them)
EXTRA: dict[str, dict] = {
    "llama": {"tie_word_embeddings": True},  # covers tied embeddings on a pre-norm family
    "qwen2": {"tie_word_embeddings": False},
    "qwen3": {"head_dim": 8},
    "gemma": {"head_dim": 8},
    "gemma2": {"head_dim": 8, "sliding_window": 16},
    "gemma3_text": {"head_dim": 8, "sliding_window": 16},
    "phi": {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attention_dropout": 0.0},
    "gpt2": {"n_embd": HIDDEN, "n_layer": 3, "n_head": 4, "n_positions": 64, "n_inner": 48},
    "gpt_neox": {"use_parallel_residual": True, "tie_word_embeddings": False},
    "gptj": {"n_embd": HIDDEN, "n_layer": 3, "n_head": 4, "n_positions": 64, "rotary_dim": 4, "n_inner": 48},
    "falcon": {"new_decoder_architecture": False, "bias": True, "parallel_attn": True, "multi_query": True},
    "starcoder2": {"use_bias": True},
    "granite": {"attention_bias": True, "mlp_bias": True, "embedding_multiplier": 2.0, "residual_multiplier": 0.5},
    "mixtral": {"num_local_experts": 4, "num_experts_per_tok": 2},
    "qwen2_moe": {
        "num_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "shared_expert_intermediate_size": 24,
        "mlp_only_layers": [1],
    },
    "qwen3_moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 16, "head_dim": 8},
    "deepseek_v3": {
        "n_routed_experts": 4,
        "num_experts_per_tok": 2,
        "moe_intermediate_size": 16,
        "n_shared_experts": 1,
        "first_k_dense_replace": 1,
        "kv_lora_rank": 16,
        "q_lora_rank": 16,
        "qk_rope_head_dim": 4,
        "qk_nope_head_dim": 4,
        "v_head_dim": 8,
        "n_group": 1,
        "topk_group": 1,
    },
    "gpt_oss": {"num_local_experts": 4, "num_experts_per_tok": 2, "head_dim": 8, "sliding_window": 16},
}
# keys a config class does not know are dropped (e.g. gpt2 has no intermediate_size)
RENAMED = {"gpt2", "gptj"}


def tiny_config(model_type: str, **overrides):
    kwargs = {} if model_type in RENAMED else dict(COMMON)
    if model_type in RENAMED:
        kwargs.update(vocab_size=101, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    if model_type == "falcon":
        kwargs.pop("intermediate_size")
        kwargs.pop("num_key_value_heads")
    if model_type == "phi":
        kwargs["num_key_value_heads"] = 4
    kwargs.update(EXTRA.get(model_type, {}))
    kwargs.update(overrides)
    return AutoConfig.for_model(model_type, **kwargs)


def tiny_model(model_type: str, *, seed: int = 0, dtype=torch.float32, **overrides):
    """A random model whose biases and norm gains are non-trivial (zeros would hide missed bias writers)."""
    torch.manual_seed(seed)
    config = tiny_config(model_type, **overrides)
    kwargs = {"experts_implementation": "eager"} if get_spec(model_type).has_experts else {}
    model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kwargs)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name or name.endswith("ln_f.weight") or ".ln_" in name:
                p.add_(torch.randn_like(p) * 0.2)
    return model.eval()
