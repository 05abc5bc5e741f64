"""The damage guard (aru.damage) in aru fit and aru edit."""

import json
import math

import pytest
from click.testing import CliRunner

from aru.cli import main
from aru.damage import Damage, DamageError, DamageProbe, Thresholds, choose_safe_layer, layer_ranking
from aru.directions import load_directions
from aru.estimators import fit_to_file
from aru.model_edit import make_plan


def test_thresholds_and_problems():
    t = Thresholds(max_kl=0.5, max_ppl_ratio=1.1)
    assert not Damage(0.4, 8, 20.0, 21.0).damaging(t)
    assert Damage(0.6, 8).problems(t) == ["first-token KL on X+ 0.6 nats > 0.5"]
    p = Damage(0.1, 8, 20.0, 4800.0).problems(t)
    assert len(p) == 1 and "20 -> 4800" in p[0] and "x240" in p[0]
    assert Damage(float("nan"), 8).damaging(t)
    for bad in ({"max_kl": 0}, {"max_kl": math.inf}, {"max_ppl_ratio": 1.0}):
        with pytest.raises(ValueError, match="must be"):
            Thresholds(**bad)


def test_choose_safe_layer_skips_damaging_layers_in_rank_order():
    kl = {5: 3.0, 2: 0.9, 7: 0.2, 1: 0.1}
    seen = []

    def measure(ly):
        seen.append(ly)
        return Damage(kl[ly], 4, label=f"layer {ly}")

    ly, dmg = choose_safe_layer([5, 2, 7, 1], measure)
    assert ly == 7 and seen == [5, 2, 7] and [d.kl for d in dmg] == [3.0, 0.9, 0.2]
    ly, dmg = choose_safe_layer([5, 2], measure)
    assert ly is None and len(dmg) == 2
    table = [
        {"layer": 1, "auroc": 0.9, "separation": 1.0},
        {"layer": 2, "auroc": 0.99, "separation": 1.0},
        {"layer": 3, "auroc": 0.9901, "separation": 2.0},
    ]
    assert layer_ranking(table) == [3, 2, 1]


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory, organism_sets):
    d = tmp_path_factory.mktemp("dmg")
    bad, good = organism_sets["train"]
    vb, vg = organism_sets["val"]
    (d / "bad.txt").write_text("\n".join(bad[::9][:120]) + "\n")
    (d / "good.txt").write_text("\n".join(good[::9][:120]) + "\n")
    (d / "vbad.txt").write_text("\n".join(vb[::5][:60]) + "\n")
    (d / "vgood.txt").write_text("\n".join(vg[::5][:60]) + "\n")
    return d


def _fit(prompt_files, out, **kw):
    from aru.organism import shipped

    return fit_to_file(
        str(shipped("tuned")),
        str(prompt_files / "bad.txt"),
        str(prompt_files / "good.txt"),
        str(out),
        val_bad=str(prompt_files / "vbad.txt"),
        val_good=str(prompt_files / "vgood.txt"),
        batch_size=64,
        **kw,
    )


def test_probe_equals_the_folded_model(organism, organism_sets):
    """The hooked estimate is the folded checkpoint's first-token KL; it grows with strength; the toy vocabulary
    skips the English perplexity."""
    import copy

    from aru.capture import capture
    from aru.directions import Directions
    from aru.estimators import get_estimator
    from aru.evaluate import first_token_kl
    from aru.model_edit import fold_into_model
    from aru.prompts import format_prompts

    model, tok = organism
    vb, vg = organism_sets["val"]
    probe = DamageProbe(model, tok, vg[:16])
    assert probe.ppl_base is None  # the toy organism does not model English
    acts = capture(model, tok, format_prompts(tok, vb[:64] + vg[:64]), layers=[4], keep=True, moments=False)
    x = acts.activations[4]
    d = get_estimator("diff-means").update(bad=x[:64], good=x[64:]).result()
    dirs = Directions({4: d.basis("all")}, 64, {"default_layer": "4"})
    plan = make_plan(dirs, 4)
    est = probe.measure(plan)
    folded = copy.deepcopy(model)
    fold_into_model(folded, plan)
    real = first_token_kl(model, folded, tok, vg[:16], progress=False)
    assert est.kl == pytest.approx(real, rel=1e-3, abs=1e-6) and est.kl > 1e-3
    assert probe.measure(make_plan(dirs, 4, strength=0.05)).kl < est.kl / 10


def test_fit_default_layer_is_not_damaging(prompt_files, tmp_path):
    """On the organism the best-AUROC layer (4) damages more than a tight KL budget allows: the guard moves the
    default to the best layer that passes, and records its damage."""
    t = Thresholds(max_kl=0.3)
    unguarded = _fit(prompt_files, tmp_path / "u.safetensors", damage_check=False)
    res = _fit(prompt_files, tmp_path / "g.safetensors", thresholds=t)
    assert unguarded.default_layer == 4
    first = res.damage[0]
    assert first.label == "layer 4" and first.damaging(t)
    assert res.default_layer != 4 and not res.damage[-1].damaging(t)
    d = load_directions(tmp_path / "g.safetensors")
    assert int(d.metadata["default_layer"]) == res.default_layer
    assert float(d.metadata["damage_kl"]) == pytest.approx(res.damage[-1].kl, rel=1e-4)
    assert len(json.loads(d.metadata["damage_prompts"])) == 16


def test_fit_refuses_when_every_layer_damages(prompt_files, tmp_path):
    out = tmp_path / "r.safetensors"
    with pytest.raises(DamageError, match="refusing to write.*first-token KL.*--method diff-means.*--force-damage"):
        _fit(prompt_files, out, thresholds=Thresholds(max_kl=1e-6))
    assert not out.exists()
    res = _fit(prompt_files, out, thresholds=Thresholds(max_kl=1e-6), force_damage=True)
    assert out.exists() and len(res.damage) == 4
    least = min(res.damage, key=lambda d: d.kl)
    assert res.default_layer == int(least.label.split()[-1])


def test_cli_fit_and_edit_guard(prompt_files, tmp_path):
    from aru.organism import shipped

    model = str(shipped("tuned"))
    dirs = tmp_path / "d.safetensors"
    args = ["--bad", prompt_files / "bad.txt", "--good", prompt_files / "good.txt", "--batch-size", "64"]
    r = CliRunner().invoke(main, ["fit", model, *map(str, args), "-o", str(dirs), "--max-kl", "1e-6"])
    assert r.exit_code == 1 and "refusing to write" in r.output and "Traceback" not in r.output
    assert not dirs.exists()
    r = CliRunner().invoke(main, ["fit", model, *map(str, args), "-o", str(dirs)])
    assert r.exit_code == 0, r.output
    assert "damage check layer" in r.stdout
    out = tmp_path / "edited"
    r = CliRunner().invoke(main, ["edit", model, "-d", str(dirs), "-o", str(out), "--max-kl", "1e-6"])
    assert r.exit_code == 1 and "refusing to write" in r.output and not out.exists()
    r = CliRunner().invoke(main, ["edit", model, "-d", str(dirs), "-o", str(out), "--max-kl", "1e-6", "--force-damage"])
    assert r.exit_code == 0, r.output
    assert "DAMAGING (written because of --force-damage)" in r.output and out.is_dir()
    r = CliRunner().invoke(main, ["edit", model, "-d", str(dirs), "-o", str(tmp_path / "e2")])
    assert r.exit_code == 0 and "damage check this edit" in r.output and "DAMAGING" not in r.output


def test_edit_without_stored_prompts_on_a_toy_vocabulary_says_it_skipped_and_what_to_pass(prompt_files, tmp_path):
    from aru.organism import shipped

    model = str(shipped("tuned"))
    dirs = tmp_path / "d.safetensors"
    _fit(prompt_files, dirs, damage_check=False)
    r = CliRunner().invoke(main, ["edit", model, "-d", str(dirs), "-o", str(tmp_path / "e")])
    assert r.exit_code == 0 and "damage check skipped" in r.output and "--good FILE" in r.output, r.output
    r = CliRunner().invoke(
        main, ["edit", model, "-d", str(dirs), "-o", str(tmp_path / "e2"), "--good", str(prompt_files / "vgood.txt")]
    )
    assert r.exit_code == 0 and "damage check this edit" in r.output, r.output
