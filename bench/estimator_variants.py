"""The pca-omega variants of docs/estimators.md, on an organism: what each picks and what its edit does.

One capture of X− / X+ (training prompts, held-out split for the AUROC), then for each variant: the layer
``aru fit`` would pick (best held-out AUROC), that component's variance rank, its class means along it, its
weight on the largest-RMS ("massive activation") dimensions, its held-out AUROC, and the damage of editing every
layer with it (first-token KL on held-out X+, plain-text perplexity), measured with projection hooks
(aru.damage). On the toy organism also the refusal rate on held-out X− over 64 generated tokens.

    python bench/estimator_variants.py --organism toy
    python bench/estimator_variants.py --model /work/cache/smollm2-13 --bad bad.txt --good good.txt \\
        --test-bad bad_test.txt --test-good good_test.txt [--text plain.txt] [--diagnose]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from aru.damage import DamageProbe
from aru.estimators import capture_sets, fit_from_captures, outlier_dims
from aru.model_edit import make_plan
from aru.stats import pooled

VARIANTS: dict[str, tuple[str, dict]] = {
    "seed: uncentred, |E|/Var (pca-omega-seed)": ("pca-omega", dict(pca="uncentred", score="omega")),
    "uncentred, |E|/Var, separating (t>=3)": ("pca-omega", dict(pca="uncentred", score="omega", separating=3.0)),
    "uncentred, |E|/Var, 8 outlier dims out": ("pca-omega", dict(pca="uncentred", score="omega", outliers=8)),
    "centred, bias vs pooled mean, |E|/Var": ("pca-omega", dict(pca="centred", score="omega", bias="pooled")),
    "centred, bias vs pooled mean, |E|/std": ("pca-omega", dict(pca="centred", score="std", bias="pooled")),
    "centred, bias vs other class, |E|/std": ("pca-omega", dict(pca="centred", score="std", bias="other")),
    "centred, pooled, |E|/std, separating": (
        "pca-omega",
        dict(pca="centred", score="std", bias="pooled", separating=3.0),
    ),
    "centred, pooled, |E|/std, top 32 by variance": (
        "pca-omega",
        dict(pca="centred", score="std", bias="pooled", top_m=32),
    ),
    "diff-means (reference)": ("diff-means", {}),
}


def load(args):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.organism == "toy":
        from aru.organism import organism_prompts, shipped

        folder = str(shipped("tuned"))
        (tb, tg), (vb, vg) = organism_prompts("train"), organism_prompts("val")
    else:
        from aru.prompts import load_prompts

        folder = args.model
        tb, tg = load_prompts(args.bad), load_prompts(args.good)
        vb, vg = load_prompts(args.test_bad), load_prompts(args.test_good)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(folder), (tb, tg, vb, vg)


def diagnose(captures, fits_by_layer, n_out=8):
    """Per layer: the seed component's variance rank, class means, outlier weight and held-out AUROC."""
    rows = []
    for ly, row in fits_by_layer.items():
        st_b, st_g = captures.train_bad.stats[ly], captures.train_good.stats[ly]
        q = row["q"].to(torch.float64)
        drop = outlier_dims(pooled(st_b, st_g), n_out)
        rows.append(
            {
                "layer": ly,
                "variance_rank": row["variance_rank"],
                "mean_good": float(st_g.mean @ q),
                "mean_bad": float(st_b.mean @ q),
                "std_good": float((q @ st_g.covariance() @ q).sqrt()),
                "std_bad": float((q @ st_b.covariance() @ q).sqrt()),
                "outlier_weight": float((q[drop] ** 2).sum()),
                "mean_norm_good": float(st_g.mean.norm()),
                "auroc": row["auroc"],
            }
        )
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--organism", choices=["toy", "files"], default="files")
    ap.add_argument("--model")
    ap.add_argument("--bad")
    ap.add_argument("--good")
    ap.add_argument("--test-bad")
    ap.add_argument("--test-good")
    ap.add_argument("--text", default=None, help="plain text for the perplexity (default: aru.damage.DEFAULT_TEXT)")
    ap.add_argument("--diagnose", action="store_true", help="per-layer table of the seed's component")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model, tok, (tb, tg, vb, vg) = load(args)
    num_layers = model.config.num_hidden_layers
    captures = capture_sets(model, tok, tb, tg, val_bad=vb, val_good=vg, batch_size=32)
    text = Path(args.text).read_text() if args.text else None
    probe = DamageProbe(model, tok, vg, text=text, max_prompts=32)
    print(f"# {args.organism if args.organism == 'toy' else args.model}: capture {time.perf_counter() - t0:.1f} s")
    print(f"plain-text perplexity of the model: {probe.ppl_base}")
    rows = []
    for name, (method, opts) in VARIANTS.items():
        res = fit_from_captures(captures, method=method, k=1, **opts)
        ly = res.default_layer
        r = next(r for r in res.table if r["layer"] == ly)
        plan = make_plan(res.directions, num_layers, source_layer=ly)
        dmg = probe.measure(plan)
        row = {
            "variant": name,
            "layer": ly,
            "variance_rank": r["variance_rank"],
            "auroc": r["auroc"],
            "cos_dm": r["cos_diff_means"],
            "kl": dmg.kl,
            "ppl_ratio": dmg.ppl_ratio,
        }
        if args.organism == "toy":
            from aru.evaluate import behaviour_rate
            from aru.model_edit import projection_hooks

            with projection_hooks(model, plan):
                row["refusal"] = behaviour_rate(model, tok, vb, max_new_tokens=64, progress=False)["rate"]
        rows.append(row)
        if args.diagnose and name.startswith("seed"):
            per = {t["layer"]: {"q": res.directions.bases[t["layer"]][0], **t} for t in res.table}
            diag = diagnose(captures, per)
    cols = ["variant", "layer", "variance_rank", "auroc", "cos_dm", "kl", "ppl_ratio"] + (
        ["refusal"] if args.organism == "toy" else []
    )
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for row in rows:
        print("| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |")
    if args.diagnose:
        dcols = list(diag[0])
        print("\n| " + " | ".join(dcols) + " |")
        print("|" + "---|" * len(dcols))
        for row in diag:
            print("| " + " | ".join(_fmt(row[c]) for c in dcols) + " |")
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "diagnosis": diag if args.diagnose else None}, indent=1))
    return 0


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


if __name__ == "__main__":
    sys.exit(main())
