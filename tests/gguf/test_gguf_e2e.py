"""End to end on the trained organism: edit → llama.cpp's converter → llama.cpp logits and greedy answers match
transformers. Needs llama-cpp-python (compiled, ~3.5 min) and the converter (see conftest)."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

import aru.gguf as g

pytestmark = pytest.mark.slow
N_HELD_OUT = 20  # forbidden and allowed held-out test questions each


def held_out_prompts():
    import aru.organism

    bad, good = aru.organism.organism_prompts("test")
    return bad[:: len(bad) // N_HELD_OUT][:N_HELD_OUT], good[:: len(good) // N_HELD_OUT][:N_HELD_OUT]


def max_rel_logit_change(folder_a, folder_b, prompts):
    """max |logits_a − logits_b| / max |logits_a| over chat prompts: the edit's own effect."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder_a)
    a = AutoModelForCausalLM.from_pretrained(folder_a, dtype=torch.float32).eval()
    b = AutoModelForCausalLM.from_pretrained(folder_b, dtype=torch.float32).eval()
    diff = scale = 0.0
    with torch.no_grad():
        for p in prompts:
            ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True)
            ids = torch.tensor([ids["input_ids"] if hasattr(ids, "keys") else ids])
            la, lb = a(ids).logits, b(ids).logits
            diff, scale = max(diff, float((la - lb).abs().max())), max(scale, float(la.abs().max()))
    return diff / scale


def test_f32_gguf_matches_transformers(converter, edited_organism, tmp_path):
    import aru.organism

    tuned, edited = edited_organism
    bad, good = held_out_prompts()
    out = g.convert(edited, tmp_path / "edited-f32.gguf", outtype="f32")
    cmp = g.compare_gguf(edited, out, prompts=bad + good, max_new_tokens=12, tol=1e-4, n_random=300)
    print(json.dumps({k: v for k, v in cmp.to_dict().items() if k != "generations"}))
    assert cmp.token_ids_agree, cmp.tokenization_mismatches
    assert cmp.rel_dlogit <= 1e-4
    assert cmp.greedy_agreement == 1.0
    assert cmp.passed
    # The edit itself moves logits far beyond the tolerance, so a broken (no-op or wrong) edit cannot pass.
    effect = max_rel_logit_change(tuned, edited, bad[:5])
    print(f"edit effect (relative): {effect:.3g}")
    assert effect > 100 * cmp.tol
    # ... and it is the behavioural edit: llama.cpp no longer refuses most held-out forbidden questions.
    refusals = sum(aru.organism.REFUSAL.strip(" .") in gen["llama_cpp"] for gen in cmp.generations[: len(bad)])
    assert refusals <= len(bad) // 4, cmp.generations[: len(bad)]
    # The shipped (unedited) fine-tuned organism refuses them in llama.cpp too: the edit is what changed.
    tuned_out = g.convert(tuned, tmp_path / "tuned-f32.gguf", outtype="f32")
    tuned_cmp = g.compare_gguf(tuned, tuned_out, prompts=bad, max_new_tokens=12, n_random=0)
    assert tuned_cmp.passed
    tuned_refusals = sum(aru.organism.REFUSAL.strip(" .") in gen["llama_cpp"] for gen in tuned_cmp.generations)
    assert tuned_refusals >= 3 * len(bad) // 4


def test_f16_gguf_greedy_answers_match(converter, edited_organism, tmp_path):
    _, edited = edited_organism
    bad, good = held_out_prompts()
    out = g.convert(edited, tmp_path / "edited-f16.gguf", outtype="f16")
    cmp = g.compare_gguf(edited, out, prompts=bad + good, max_new_tokens=12, tol=math.inf, n_random=100)
    print(json.dumps({k: v for k, v in cmp.to_dict().items() if k != "generations"}))
    assert cmp.token_ids_agree
    assert cmp.greedy_agreement == 1.0  # no logit tolerance for f16: the report records the measured rel_dlogit


def test_cli_check_passes_and_fails(converter, edited_organism, tmp_path):
    _, edited = edited_organism
    out = tmp_path / "e.gguf"
    res = CliRunner().invoke(g_main(), ["gguf", str(edited), "-o", str(out), "--check", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["check"]["passed"] and data["check"]["rel_dlogit"] <= 1e-4
    # An impossible tolerance makes the check fail with exit 1 (and the GGUF stays, it is valid).
    res = CliRunner().invoke(g_main(), ["gguf", str(edited), "-o", str(out), "--overwrite", "--check", "--tol", "0"])
    assert res.exit_code == 1 and "FAIL" in res.output


def g_main():
    from aru.cli import main

    return main
