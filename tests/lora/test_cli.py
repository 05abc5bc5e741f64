"""aru edit --format peft, aru verify ADAPTER, aru push of an adapter (dry run), provenance."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from lora_util import tiny_case

from aru.cli import main
from aru.errors import ProvenanceError
from aru.hub import build_model_card, push
from aru.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS
from aru.provenance import PROVENANCE_FILE, check_provenance, file_sha256, read_provenance, rewrite_provenance
from aru.verify import verify_edit


@pytest.fixture
def adapter(tmp_path):
    src, dpath, _ = tiny_case("qwen2", tmp_path)
    res = CliRunner().invoke(main, ["edit", str(src), "-d", str(dpath), "--format", "peft", "-o", str(tmp_path / "ad")])
    assert res.exit_code == 0, res.output
    assert "LoRA adapter, r = 2" in res.output and "aru verify" in res.output
    return src, dpath, tmp_path / "ad"


def test_folder_has_peft_files_and_provenance(adapter):
    src, dpath, out = adapter
    assert sorted(p.name for p in out.iterdir()) == sorted([ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROVENANCE_FILE])
    rec = check_provenance(out)  # every file hashed
    assert rec["settings"]["format"] == "peft" and rec["settings"]["rank"] == 2
    assert rec["input"]["files"]["model.safetensors"] == file_sha256(src / "model.safetensors")
    assert rec["directions"]["sha256"] == file_sha256(dpath)
    cfg = json.loads((out / ADAPTER_CONFIG).read_text())
    assert cfg["base_model_name_or_path"] == str(src)


def test_verify_adapter_cli_and_api(adapter):
    src, _, out = adapter
    res = CliRunner().invoke(main, ["verify", str(out), "--base", str(src), "--json"])
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    assert report["passed"] and report["rel_dlogit"] < 1e-5 and report["merged_rel_dlogit"] < 1e-5
    assert report["leak"] < 1e-5 < report["base_leak"]


def test_verify_fails_on_a_broken_adapter(adapter, tmp_path):
    """Flip the sign of one lora_B: verify must see it (the test can fail)."""
    from safetensors.torch import load_file, save_file

    src, _, out = adapter
    broken = tmp_path / "broken"
    broken.mkdir()
    for p in out.iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    t = load_file(out / ADAPTER_WEIGHTS)
    key = next(k for k in t if k.endswith("o_proj.lora_B.weight"))
    t[key] = -t[key]
    save_file(t, broken / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    result = verify_edit(broken, src)
    assert not result.passed and result.rel_dlogit > 1e-3


def test_verify_refuses_another_base(adapter, tmp_path):
    _, _, out = adapter
    other, _, _ = tiny_case("qwen2", tmp_path / "other", seed=5)
    with pytest.raises(ProvenanceError, match="is not the base"):
        verify_edit(out, other)


def test_push_card_is_a_peft_adapter_card(adapter):
    _, _, out = adapter
    rec = read_provenance(out)
    rec["input"]["repo_id"] = "org/base-model"  # as if exported from the Hub
    rewrite_provenance(out, rec)
    card = str(build_model_card(out, repo_id="me/adapter"))
    assert "library_name: peft" in card and "base_model: org/base-model" in card
    assert "base_model_relation: adapter" in card and "vllm serve org/base-model --enable-lora" in card
    result = push(out, "me/adapter", dry_run=True)
    assert {p for p, _ in result.files} == {ADAPTER_CONFIG, ADAPTER_WEIGHTS, PROVENANCE_FILE, "README.md"}


def test_cli_refusal_is_one_clear_line(tmp_path):
    src, dpath, _ = tiny_case("gpt_oss", tmp_path)
    res = CliRunner().invoke(main, ["edit", str(src), "-d", str(dpath), "--format", "peft", "-o", str(tmp_path / "a")])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert "Error: model.layers.0.mlp.experts.down_proj" in res.output
    assert not (tmp_path / "a").exists()


def test_existing_output_needs_force(adapter):
    src, dpath, out = adapter
    args = ["edit", str(src), "-d", str(dpath), "--format", "peft", "-o", str(out)]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 1 and "already exists" in res.output
    before = file_sha256(out / ADAPTER_WEIGHTS)
    res = CliRunner().invoke(main, args + ["--force", "--strength", "0.5"])
    assert res.exit_code == 0, res.output
    assert file_sha256(out / ADAPTER_WEIGHTS) != before
    check_provenance(out)


@pytest.mark.parametrize("model_type", ["qwen2", "phi", "mixtral"])
def test_plain_peft_from_pretrained_loads_it(model_type, tmp_path):
    """What users run: PeftModel.from_pretrained, with no missing or unexpected adapter keys."""
    import warnings

    import torch
    from lora_util import adapter_logits, ids_for
    from peft import PeftModel

    from aru.lora import export_adapter
    from aru.verify import load_float32

    src, dpath, vocab = tiny_case(model_type, tmp_path)
    export_adapter(src, dpath, tmp_path / "ad")
    ids = ids_for(vocab)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PeftModel.from_pretrained(load_float32(src, model_type), tmp_path / "ad").eval()
    assert not [w for w in caught if "missing" in str(w.message).lower() or "unexpected" in str(w.message).lower()]
    with torch.no_grad():
        assert torch.equal(model(ids).logits, adapter_logits(src, tmp_path / "ad", ids, merge=False))
