"""Deliberately unusual tiny decoders, registered under model_types outside aru's table."""

from __future__ import annotations

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM


class SquashedLinear(nn.Linear):
    """A Linear whose output passes through y + 0.1 y²: it writes into the residual, but non-linearly."""

    def forward(self, x):
        y = super().forward(x)
        return y + 0.1 * y.pow(2)


class SquashConfig(LlamaConfig):
    model_type = "aru_test_squash"


class SquashForCausalLM(LlamaForCausalLM):
    config_class = SquashConfig

    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            old = layer.mlp.down_proj
            layer.mlp.down_proj = SquashedLinear(old.in_features, old.out_features, bias=False)


class OffsetConfig(LlamaConfig):
    model_type = "aru_test_offset"


class OffsetForCausalLM(LlamaForCausalLM):
    """Each decoder layer adds a learned vector held by the layer itself (no module writes it)."""

    config_class = OffsetConfig

    def __init__(self, config):
        super().__init__(config)
        for layer in self.model.layers:
            layer.offset = nn.Parameter(torch.randn(config.hidden_size))
            forward = layer.forward

            def shifted(*args, _f=forward, _layer=layer, **kwargs):
                out = _f(*args, **kwargs)
                return out + _layer.offset

            layer.forward = shifted


def register() -> None:
    for cfg, model in ((SquashConfig, SquashForCausalLM), (OffsetConfig, OffsetForCausalLM)):
        try:
            AutoConfig.register(cfg.model_type, cfg)
            AutoModelForCausalLM.register(cfg, model)
        except ValueError:
            pass  # registered by an earlier test


def tiny(cls, **kw):
    cfg = cls.config_class(
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=101,
        **kw,
    )
    torch.manual_seed(0)
    return cls(cfg).eval()
