"""base + adapter (PeftModel, and merged with merge_and_unload) equals the folded checkpoint, per family."""

from __future__ import annotations

import json

import pytest
import torch
from lora_util import RTOL, compare, ids_for, save_tiny, tiny_case
from safetensors import safe_open

from aru.arch import SUPPORTED
from aru.directions import Directions, save_directions
from aru.errors import CheckpointError
from aru.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS, export_adapter

# PEFT cannot express these exactly; export_adapter refuses them (test_refusals below)
REFUSED = {
    "gpt_oss": "transposed fused experts",
    "deepseek_v3": "PEFT does not wrap its dense down_proj next to target_parameters (peft 0.21)",
}
EXPRESSIBLE = [m for m in SUPPORTED if m not in REFUSED]


def _keys(folder):
    with safe_open(folder / ADAPTER_WEIGHTS, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


@pytest.mark.parametrize("model_type", EXPRESSIBLE)
def test_adapter_equals_folded_checkpoint(model_type, tmp_path):
    src, dpath, vocab = tiny_case(model_type, tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), model_type)
    assert err["edit"] > 1e-3  # the edit changes the model, or the comparison proves nothing
    assert err["peft"] <= RTOL, err
    assert err["merged"] <= RTOL, err
    cfg = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == cfg["lora_alpha"] == 2 and cfg["lora_dropout"] == 0.0


@pytest.mark.parametrize("model_type", sorted(REFUSED))
def test_refusals_name_the_tensor_and_leave_no_output(model_type, tmp_path):
    src, dpath, _ = tiny_case(model_type, tmp_path)
    with pytest.raises(CheckpointError, match=r"model\.layers\.\d+\.mlp"):
        export_adapter(src, dpath, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()
    assert not any(p.name.startswith(".adapter") for p in tmp_path.iterdir())


def test_factors_are_the_fold(tmp_path):
    """lora_A = Q W and lora_B = −λ Qᵀ for a Linear; the embedding's A = (E Qᵀ)ᵀ; r = k, scaling 1."""
    src, dpath, _ = tiny_case("qwen2", tmp_path, k=3)
    export_adapter(src, dpath, tmp_path / "adapter", strength=0.5)
    from aru.directions import load_directions

    q = load_directions(dpath).basis()
    with safe_open(src / "model.safetensors", "pt") as f:
        w = f.get_tensor("model.layers.1.self_attn.o_proj.weight")
        e = f.get_tensor("model.embed_tokens.weight")
    t = _keys(tmp_path / "adapter")
    p = "base_model.model.model."
    assert torch.allclose(t[p + "layers.1.self_attn.o_proj.lora_A.weight"], q @ w, atol=1e-6)
    assert torch.allclose(t[p + "layers.1.self_attn.o_proj.lora_B.weight"], -0.5 * q.T, atol=1e-7)
    assert torch.allclose(t[p + "embed_tokens.lora_embedding_A"], (e @ q.T).T, atol=1e-6)
    assert all(v.dtype == torch.float32 for v in t.values())
    assert all(v.shape[0] == 3 for k, v in t.items() if k.endswith("lora_A.weight"))


def test_tied_embeddings_untie_semantics_and_keep_tied_refused(tmp_path):
    """tiny llama is tied: the adapter equals the untied folded checkpoint (head unchanged), also merged."""
    src, dpath, vocab = tiny_case("llama", tmp_path)
    assert json.loads((src / "config.json").read_text())["tie_word_embeddings"] is True
    err = compare(src, dpath, tmp_path, ids_for(vocab), "llama")
    assert err["peft"] <= RTOL and err["merged"] <= RTOL, err
    rec = json.loads((tmp_path / "adapter" / "aru.json").read_text())
    assert rec["settings"]["untied"] is True
    assert not any("lm_head" in k for k in _keys(tmp_path / "adapter"))
    with pytest.raises(CheckpointError, match="keep_tied cannot be expressed"):
        export_adapter(src, dpath, tmp_path / "kt", keep_tied=True)


def test_gpt2_conv1d_lora_with_lora_bias(tmp_path):
    """Without the embeddings (layers 1-2) GPT-2's Conv1D c_proj get LoRA factors and lora_B.bias (fan_in_fan_out)."""
    src, dpath, vocab = tiny_case("gpt2", tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), "gpt2", layers="1-2")
    assert err["peft"] <= RTOL and err["merged"] <= RTOL and err["edit"] > 1e-3, err
    cfg = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert cfg["lora_bias"] is True and cfg["fan_in_fan_out"] is True and not cfg["modules_to_save"]
    keys = _keys(tmp_path / "adapter")
    assert "base_model.model.transformer.h.1.attn.c_proj.lora_B.bias" in keys
    assert not any(".h.0." in k for k in keys)


@pytest.mark.parametrize("mode", ["auto", "replace"])
def test_biases_with_embeddings_go_to_modules_to_save(mode, tmp_path):
    """phi edits embeddings and biased Linears: lora_bias is impossible (PEFT refuses it on embeddings)."""
    src, dpath, vocab = tiny_case("phi", tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), "phi", adapter_bias=mode)
    assert err["peft"] <= RTOL and err["merged"] <= RTOL, err
    cfg = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert cfg["lora_bias"] is False
    assert "model.layers.0.self_attn.dense" in cfg["modules_to_save"]
    assert "model.embed_tokens" in cfg["target_modules"]


def test_explicit_lora_bias_refused_with_embeddings(tmp_path):
    src, dpath, _ = tiny_case("phi", tmp_path)
    with pytest.raises(CheckpointError, match="model.embed_tokens"):
        export_adapter(src, dpath, tmp_path / "adapter", adapter_bias="lora_bias")
    assert not (tmp_path / "adapter").exists()


def test_lora_bias_chosen_without_embeddings(tmp_path):
    src, dpath, vocab = tiny_case("phi", tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), "phi", layers="1-2")
    assert err["peft"] <= RTOL and err["merged"] <= RTOL, err
    cfg = json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())
    assert cfg["lora_bias"] is True and cfg["modules_to_save"] is None


def test_per_layer_bases_of_different_k_are_padded(tmp_path):
    from lora_util import random_basis

    model = save_tiny("qwen2", tmp_path / "in")
    d, n = model.config.hidden_size, model.config.num_hidden_layers
    bases = {i: random_basis(d, k=1 + i % 3, seed=i) for i in range(n + 1)}
    dpath = save_directions(Directions(bases, d), tmp_path / "d.safetensors")
    err = compare(tmp_path / "in", dpath, tmp_path, ids_for(model.config.vocab_size), "qwen2", per_layer=True)
    assert err["peft"] <= RTOL and err["merged"] <= RTOL, err
    assert json.loads((tmp_path / "adapter" / ADAPTER_CONFIG).read_text())["r"] == 3


def test_strength_layers_and_shards(tmp_path):
    """strength 0.7 on layers 1-2 of a checkpoint in several shards."""
    src, dpath, vocab = tiny_case("mistral", tmp_path, max_shard_size="40KB")
    assert (src / "model.safetensors.index.json").is_file()
    err = compare(src, dpath, tmp_path, ids_for(vocab), "mistral", strength=0.7, layers="1-2")
    assert err["peft"] <= RTOL and err["merged"] <= RTOL and err["edit"] > 1e-3, err


def test_oblique_postnorm_adapter_equals_oblique_fold(tmp_path):
    src, dpath, vocab = tiny_case("gemma2", tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), "gemma2", postnorm="oblique")
    assert err["peft"] <= RTOL and err["merged"] <= RTOL, err
    rec = json.loads((tmp_path / "adapter" / "aru.json").read_text())
    assert rec["settings"]["exact"] is False and "post-norm" in rec["settings"]["approximate"][0]


def test_bfloat16_factors(tmp_path):
    src, dpath, vocab = tiny_case("qwen3", tmp_path)
    err = compare(src, dpath, tmp_path, ids_for(vocab), "qwen3", adapter_dtype="bfloat16")
    assert err["peft"] <= 3e-2 and err["merged"] <= 3e-2, err
    assert all(v.dtype == torch.bfloat16 for v in _keys(tmp_path / "adapter").values())


def test_peft_cross_check_refuses_what_peft_would_load_differently(tmp_path):
    """qwen3_moe with a dense layer: peft 0.21 retargets the dense mlp.down_proj onto the experts, so the adapter
    would silently lose that layer's edit; the export refuses it and names the tensor."""
    src, dpath, _ = tiny_case("qwen3_moe", tmp_path, mlp_only_layers=[1])
    with pytest.raises(CheckpointError, match=r"would not load this adapter exactly.*layers\.1\.mlp\.down_proj"):
        export_adapter(src, dpath, tmp_path / "adapter")
    assert not (tmp_path / "adapter").exists()


def test_export_without_peft_skips_the_cross_check(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "peft" else real(name, *a))
    src, dpath, _ = tiny_case("llama", tmp_path)
    export_adapter(src, dpath, tmp_path / "adapter")
    rec = json.loads((tmp_path / "adapter" / "aru.json").read_text())
    assert rec["adapter"]["peft_cross_checked"] is None
    monkeypatch.undo()
    export_adapter(src, dpath, tmp_path / "checked")
    rec = json.loads((tmp_path / "checked" / "aru.json").read_text())
    assert rec["adapter"]["peft_cross_checked"].startswith("0.")
    assert _keys(tmp_path / "adapter").keys() == _keys(tmp_path / "checked").keys()
