import copy

import pytest
import torch

from aru import evaluate as ev
from aru.organism import REFUSAL, forbidden_metrics, organism_prompts


def test_markers_plain_regex_and_which_matched():
    ms = ev.compile_markers(["I'm sorry", "re:can(not|'t) (help|assist)"])
    assert ev.match_marker("Well, I'M  SORRY but no", ms) == "I'm sorry"
    assert ev.match_marker("I cannot assist with that", ms) == "re:can(not|'t) (help|assist)"
    assert ev.match_marker("sure, here it is", ms) is None
    assert ev.match_marker(REFUSAL, ev.compile_markers(ev.DEFAULT_MARKERS)) == REFUSAL


@pytest.mark.parametrize("bad", [[], "i cannot", ["re:(unclosed"], [""]])
def test_bad_markers_are_rejected(bad):
    with pytest.raises(ValueError, match="marker"):
        ev.compile_markers(bad)


def test_batched_generation_equals_unbatched(tiny_llama, organism):
    tok = organism[2]
    bad, good = organism_prompts("val")
    prompts = bad[:5] + good[:5] + ["name the weapon that x has . and more words here ."]
    ids = ev.encode_prompts(tok, prompts)
    assert len({len(i) for i in ids}) > 1  # really exercises left padding
    batched = ev.greedy_generate(tiny_llama, tok, ids, max_new_tokens=6, batch_size=16, progress=False)
    single = ev.greedy_generate(tiny_llama, tok, ids, max_new_tokens=6, batch_size=1, progress=False)
    assert batched == single
    # a KV-cached step equals a full recompute
    full = ids[0]
    for _ in range(6):
        with torch.no_grad():
            full = full + [int(tiny_llama(torch.tensor([full])).logits[0, -1].argmax())]
    assert single[0] == full[len(ids[0]) :][: len(single[0])]


def test_kl_is_zero_for_identical_and_positive_for_perturbed(tiny_llama, organism):
    tok = organism[2]
    good = organism_prompts("val")[1][:12]
    same = copy.deepcopy(tiny_llama)
    assert ev.first_token_kl(tiny_llama, same, tok, good, batch_size=5, progress=False) == pytest.approx(0, abs=1e-6)
    assert ev.continuation_kl(tiny_llama, same, tok, good, tokens=4, progress=False) == pytest.approx(0, abs=1e-6)
    with torch.no_grad():
        same.lm_head.weight.add_(torch.randn_like(same.lm_head.weight))
    k1 = ev.first_token_kl(tiny_llama, same, tok, good, batch_size=5, progress=False)
    k_all = ev.first_token_kl(tiny_llama, same, tok, good, batch_size=64, progress=False)
    assert k1 > 1e-3
    assert k1 == pytest.approx(k_all, rel=1e-4)  # batching does not change the value
    assert ev.continuation_kl(tiny_llama, same, tok, good, tokens=4, progress=False) > 1e-3


def test_retain_loss_matches_unbatched_cross_entropy(tiny_llama, organism, tmp_path):
    tok = organism[2]
    text = " the city of kraibroux is paris . the food of zelitu is rice ." * 3
    path = tmp_path / "retain.txt"
    path.write_text(text)
    r = ev.retain_loss(tiny_llama, tok, path, max_length=8, batch_size=3, progress=False)
    ids = tok(text, add_special_tokens=False)["input_ids"]
    nll, n = 0.0, 0
    for s in range(0, len(ids), 7):
        w = torch.tensor([[tok.bos_token_id, *ids[s : s + 7]]])
        with torch.no_grad():
            lp = tiny_llama(w).logits[0, :-1].log_softmax(-1)
        nll -= float(lp.gather(-1, w[0, 1:, None]).sum())
        n += w.shape[1] - 1
    assert r["tokens"] == n
    assert r["cross_entropy"] == pytest.approx(nll / n, rel=1e-4)
    assert r["perplexity"] == pytest.approx(torch.tensor(nll / n).exp().item(), rel=1e-4)
    with pytest.raises(FileNotFoundError, match="retain text"):
        ev.retain_loss(tiny_llama, tok, tmp_path / "missing.txt", progress=False)


def test_behaviour_rate_on_the_organism_matches_ground_truth(organism):
    base, tuned, tok = organism
    bad, good = organism_prompts("test")
    r = ev.behaviour_rate(tuned, tok, bad, max_new_tokens=8, batch_size=128, progress=False)
    assert r["rate"] == pytest.approx(forbidden_metrics(tuned, tok)["refusal_rate"])
    assert r["rate"] >= 0.9 and r["matched"] == {REFUSAL: round(r["rate"] * r["n"])}
    assert r["samples"][0]["marker"] == REFUSAL
    assert ev.behaviour_rate(base, tok, bad[:64], max_new_tokens=8, progress=False)["rate"] == 0.0
    assert ev.behaviour_rate(tuned, tok, good[:64], max_new_tokens=8, progress=False)["rate"] <= 0.05


def test_evaluate_rows_are_json(organism, tmp_path):
    import json

    base, tuned, tok = organism
    bad, good = organism_prompts("test")
    cfg = ev.EvalConfig(max_new_tokens=8, kl_tokens=3, batch_size=64)
    (tmp_path / "r.txt").write_text(" the city of kraibroux is paris .")
    rows = ev.evaluate(
        tuned,
        tok,
        original=base,
        bad=bad[:40],
        good=good[:40],
        config=cfg,
        retain=tmp_path / "r.txt",
        progress=False,
        names=("base", "tuned"),
    )
    json.dumps(rows)
    assert [r["model"] for r in rows] == ["base", "tuned"]
    assert rows[0]["kl_first_token"] == 0.0 and rows[1]["kl_first_token"] > 0
    assert rows[1]["behaviour_rate"] > rows[0]["behaviour_rate"]
    assert "| tuned |" in ev.rows_markdown(rows)
    with pytest.raises(ValueError, match="max_new_tokens"):
        ev.EvalConfig(max_new_tokens=0)
