"""Derived architecture knowledge: agrees with the table, proves exact folds, refuses what it cannot fold."""

from __future__ import annotations

import warnings

import pytest
import torch
import unusual
from agree import disagreements, names_of
from click.testing import CliRunner
from tiny import tiny_config, tiny_model

from aru.arch import SPECS, SUPPORTED, get_spec
from aru.arch.derive import EXACT_RTOL, derive_spec
from aru.checkpoint import edit_checkpoint
from aru.directions import Directions, orthonormalize, save_directions
from aru.errors import UnsupportedArchitectureError
from aru.model_edit import make_plan, projection_hooks
from aru.verify import load_float32

# MLA attention has one key/value head per query head (the table's tiny deepseek_v3 shares them in pairs,
# which only the sdpa kernel accepts)
TABLE_OVERRIDES = {"deepseek_v3": {"num_key_value_heads": 4}}


@pytest.mark.parametrize("model_type", SUPPORTED)
def test_derivation_agrees_with_the_table(model_type):
    config = tiny_config(model_type, **TABLE_OVERRIDES.get(model_type, {}))
    spec, proof = derive_spec(model_type, config)
    assert spec is not None, proof.reason
    table = SPECS[model_type]
    assert proof.verdict == ("exact" if table.exact else "approximate")
    if table.exact:
        assert proof.deviation <= EXACT_RTOL
    else:
        assert proof.deviation > EXACT_RTOL  # the post-norm fold is measurably approximate
    assert proof.leak < 1e-4
    names = names_of(tiny_model(model_type, **TABLE_OVERRIDES.get(model_type, {})))
    assert disagreements(table, spec, names) == []


def test_disagreement_is_detected():
    """The agreement check can fail: a spec missing the MLP writer disagrees with the table."""
    table = SPECS["llama"]
    partial = type(table)("llama", tuple(w for w in table.writers if w.role != "mlp"))
    names = names_of(tiny_model("llama"))
    assert any("down_proj" in x for x in disagreements(table, partial, names))


def _save(model, folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)


def _dirs(d, tmp_path, seed=3):
    q = orthonormalize(torch.randn(2, d, generator=torch.Generator().manual_seed(seed)))
    return q, save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")


@pytest.mark.parametrize(("model_type", "extra"), [("olmo", {}), ("glm4_moe", {"first_k_dense_replace": 1})])
def test_derived_edit_equals_hooked_original(model_type, extra, tmp_path):
    """A model_type outside the table: the streamed edit is exact, and aru.json records the proof."""
    assert model_type not in SPECS
    from aru.arch.derive import build_tiny
    from aru.arch.derive import tiny_config as derived_config

    config, _ = derived_config(model_type, None, max_layers=3)
    for k, v in extra.items():
        setattr(config, k, v)
    model = build_tiny(config)
    _save(model, tmp_path / "in")
    q, dpath = _dirs(model.config.hidden_size, tmp_path)
    result = edit_checkpoint(tmp_path / "in", dpath, tmp_path / "out", progress=False)
    arch = result.provenance["settings"]["arch"]
    assert arch["source"] == "derived" and arch["verdict"] == "exact"
    assert arch["deviation"] <= EXACT_RTOL and arch["transformers"]
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    plan = make_plan(Directions({"all": q}, q.shape[1]), model.config.num_hidden_layers)
    with torch.no_grad():
        original = model(ids).logits
        with projection_hooks(model, plan):
            hooked = model(ids).logits
        edited = load_float32(tmp_path / "out", model_type)(ids).logits
    scale = hooked.abs().max()
    assert (hooked - original).abs().max() > 1e-3 * scale
    assert (edited - hooked).abs().max() <= EXACT_RTOL * scale


def test_derivations_are_cached(tmp_path):
    config = tiny_config("llama")
    _, first = derive_spec("olmo", config.to_dict() | {"model_type": "olmo"})
    from aru.arch import derive

    derive._MEMORY.clear()  # the disk cache answers
    _, again = derive_spec("olmo", config.to_dict() | {"model_type": "olmo"})
    assert again.key == first.key and again.seconds == first.seconds
    assert list((tmp_path / "aru-cache" / "arch").glob("olmo-*.json"))


@pytest.mark.parametrize(("cls", "culprit"), [("SquashForCausalLM", "mlp.down_proj"), ("OffsetForCausalLM", "layer 0")])
def test_unusual_writer_is_refused_before_any_output(cls, culprit, tmp_path):
    unusual.register()
    model = unusual.tiny(getattr(unusual, cls))
    _save(model, tmp_path / "in")
    _, dpath = _dirs(model.config.hidden_size, tmp_path)
    with pytest.raises(UnsupportedArchitectureError, match=culprit):
        edit_checkpoint(tmp_path / "in", dpath, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out*"))

    from aru.cli import main

    res = CliRunner().invoke(main, ["edit", str(tmp_path / "in"), "-d", str(dpath), "-o", str(tmp_path / "o2")])
    assert res.exit_code != 0 and culprit in res.output and "Traceback" not in res.output
    assert not (tmp_path / "o2").exists()


def test_unknown_model_type_without_config_names_the_table():
    with pytest.raises(UnsupportedArchitectureError, match="llama"):
        get_spec("no_such_type")
    with pytest.raises(UnsupportedArchitectureError, match="unknown to the installed transformers"):
        get_spec("no_such_type", {"model_type": "no_such_type"})
