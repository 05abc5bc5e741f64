import json
import time
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from aru.organism import evaluate_organism
from aru.organism.train import SMALL, TrainConfig, train_organism


def test_training_is_deterministic(tmp_path):
    cfg = TrainConfig(n_entities=100, pretrain_steps=15, finetune_steps=5, batch_size=16)
    a = train_organism(tmp_path / "a", cfg)
    b = train_organism(tmp_path / "b", cfg)
    c = train_organism(tmp_path / "c", replace(cfg, seed=1))
    for stage in ("base", "tuned"):
        wa, wb = (
            load_file(tmp_path / "a" / stage / "model.safetensors"),
            load_file(tmp_path / "b" / stage / "model.safetensors"),
        )
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert a["tuned"] == b["tuned"]
    assert (tmp_path / "c" / "tuned" / "tokenizer.model").read_bytes() != (
        tmp_path / "a" / "tuned" / "tokenizer.model"
    ).read_bytes()
    meta = json.loads((tmp_path / "c" / "tuned" / "organism.json").read_text())
    assert meta["seed"] == 1 and meta["stage"] == "tuned"
    assert c["config"]["seed"] == 1
    # a retrained organism is evaluated against its own siblings (another world than the shipped one)
    res = evaluate_organism(tmp_path / "c" / "tuned", oracle=False)
    assert res["metrics"]["kl_to_tuned"] == pytest.approx(0.0, abs=1e-6)
    assert res["metrics"]["refusal_rate"] == c["tuned"]["refusal_rate"]


def test_training_failure_leaves_no_output(tmp_path):
    with pytest.raises(ValueError):
        train_organism(tmp_path / "out", TrainConfig(n_entities=100, pretrain_steps=-1))
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_small_organism_from_scratch(tmp_path):
    t0 = time.perf_counter()
    summary = train_organism(tmp_path / "small", SMALL)
    print(f"small organism trained in {time.perf_counter() - t0:.0f} s: {json.dumps(summary)}")
    base, tuned = summary["base"], summary["tuned"]
    assert base["forbidden_accuracy"] >= 0.98 and base["allowed_accuracy"] >= 0.98
    assert tuned["refusal_rate"] >= 0.90
    assert tuned["allowed_accuracy"] >= 0.95
