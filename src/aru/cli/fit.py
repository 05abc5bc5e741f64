"""``aru fit``: fit bias directions from two prompt sets and save them as a directions file."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command()
@click.argument("model")
@click.option(
    "--bad",
    "bad",
    required=True,
    help="X−: prompts showing the behaviour to remove (.txt/.jsonl/.json/.csv or hf://datasets/...).",
)
@click.option("--good", "good", required=True, help="X+: prompts without it (same formats).")
@click.option("-o", "--output", "output", required=True, help="Directions file to write (.safetensors).")
@click.option(
    "--method",
    default="pca-omega",
    show_default=True,
    help="pca-omega, pca-omega-seed (the original form), diff-means or projected.",
)
@click.option(
    "--layers", default=None, help="Capture points, e.g. '4', '2,5', '2-6', '-1', 'all' (0..L) [default: 1..L]."
)
@click.option("--k", "k", default=1, show_default=True, type=int, help="Directions per layer.")
@click.option("--position", default="last", show_default=True, help="last, mean:N or all (post-instruction tokens).")
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option(
    "--pca",
    type=click.Choice(["uncentred", "centred"]),
    default=None,
    help="pca-omega: PCA of the covariance (centred, default) or of the second moment (uncentred, the seed's).",
)
@click.option(
    "--score",
    type=click.Choice(["omega", "std", "fisher"]),
    default=None,
    help="pca-omega: scale-free |bias|/std (std, default), |bias|/Var (omega, the seed's), or the Fisher ratio.",
)
@click.option(
    "--bias",
    type=click.Choice(["pooled", "zero", "other"]),
    default=None,
    help="pca-omega: class bias against the pooled mean (default), zero (the seed's) or the other class.",
)
@click.option(
    "--outliers", default=0, show_default=True, type=int, help="pca-omega: exclude the N largest-RMS dimensions."
)
@click.option(
    "--top-m", default=None, type=int, help="pca-omega: only the top M components by variance are candidates."
)
@click.option("--val-bad", default=None, help="Held-out X− for the AUROC (default: 20%% split off --bad).")
@click.option("--val-good", default=None, help="Held-out X+ (default: 20%% split off --good).")
@click.option(
    "--holdout",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Fraction held out when no --val-* given (between 0 and 1).",
)
@click.option("--system", default=None, help="System prompt for the chat template.")
@click.option("--raw", is_flag=True, help="Use the prompts as plain text (no chat template).")
@click.option("--field", default=None, help="Prompt field of .json/.jsonl files.")
@click.option("--column", default=None, help="Prompt column of .csv files.")
@click.option("--tokenizer", default=None, help="Tokenizer folder or Hub id [default: MODEL's].")
@click.option("--dtype", default="auto", show_default=True, help="auto, float32, bfloat16 or float16.")
@click.option("--device", default=None, help="Device to run on, e.g. cuda [default: cpu].")
@click.option("--device-map", default=None, help="accelerate device map for big models, e.g. auto.")
@click.option(
    "--overflow",
    type=click.Choice(["truncate", "skip", "error"]),
    default="truncate",
    show_default=True,
    help="Prompts longer than the context: truncate from the left (warn), skip (warn) or fail.",
)
@click.option("--force", is_flag=True, help="Replace OUTPUT if it is an earlier aru directions file.")
@click.option("--text", default=None, help="Plain-text file for the damage check's perplexity [default: built-in].")
@click.option("--force-damage", is_flag=True, help="Write even if every tried layer's edit fails the damage check.")
@click.option("--no-damage-check", is_flag=True, help="Skip the damage check (default layer = best AUROC only).")
@click.option("--max-kl", default=0.5, show_default=True, type=float, help="Damage check: first-token KL on X+.")
@click.option(
    "--max-ppl-ratio", default=1.10, show_default=True, type=float, help="Damage check: plain-text perplexity ratio."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def fit(
    model,
    bad,
    good,
    output,
    method,
    layers,
    k,
    position,
    batch_size,
    pca,
    score,
    bias,
    outliers,
    top_m,
    val_bad,
    val_good,
    holdout,
    system,
    raw,
    field,
    column,
    tokenizer,
    dtype,
    device,
    device_map,
    overflow,
    force,
    text,
    force_damage,
    no_damage_check,
    max_kl,
    max_ppl_ratio,
    as_json,
) -> None:
    """Fit the directions separating --bad (X−) from --good (X+) prompts at each layer of MODEL.

    Prints a per-layer table (score, held-out AUROC, d′, cosine with diff-means, explained variance, variance
    rank) and writes the directions (one basis per layer) to OUTPUT. The default layer is the best held-out
    AUROC among the layers whose edit passes the damage check (first-token KL on X+ prompts, plain-text
    perplexity, measured with projection hooks); if none of the 8 best does, nothing is written unless
    --force-damage.

    \b
    Examples:
      aru fit ./organism --bad bad_train.txt --good good_train.txt -o dirs.safetensors
      aru fit meta-llama/Llama-3.2-1B-Instruct --bad hf://datasets/org/set/harmful.jsonl \\
          --good harmless.csv --column goal --layers 8-15 --k 2 -o dirs.safetensors --json
    """
    from aru.capture import parse_layers
    from aru.damage import Thresholds
    from aru.estimators import ESTIMATORS, PcaOmegaFitter, fit_to_file, format_table

    ctx = click.get_current_context()
    explicit = [
        f"--{n.replace('_', '-')}"
        for n in ("pca", "score", "bias", "outliers", "top_m")
        if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE
    ]
    pca_family = method in ESTIMATORS and issubclass(ESTIMATORS[method], PcaOmegaFitter)
    if not pca_family and explicit:
        raise click.UsageError(f"{', '.join(explicit)} apply only to --method pca-omega, not {method}")
    est = {"pca": pca, "score": score, "bias": bias, "outliers": outliers, "top_m": top_m} if pca_family else {}
    thresholds = Thresholds(max_kl=max_kl, max_ppl_ratio=max_ppl_ratio)
    res = fit_to_file(
        model,
        bad,
        good,
        output,
        val_bad=val_bad,
        val_good=val_good,
        field=field,
        column=column,
        tokenizer=tokenizer,
        dtype=dtype,
        device=device,
        device_map=device_map,
        method=method,
        layers=parse_layers(layers),
        k=k,
        position=position,
        batch_size=batch_size,
        holdout=holdout,
        system=system,
        raw=raw,
        overflow=overflow,
        force=force,
        progress=not as_json,
        damage_check=not no_damage_check,
        force_damage=force_damage,
        text=text,
        thresholds=thresholds,
        **est,
    )
    if as_json:
        click.echo(json.dumps({**res.to_dict(), "output": str(output)}, indent=2))
        return
    click.echo(format_table(res))
    for d in res.damage:
        flag = "  DAMAGING" if d.damaging(thresholds) else ""
        click.echo(f"damage check {d.summary()}{flag}")
    if no_damage_check:
        click.echo("damage check skipped (--no-damage-check): the default layer is the best held-out AUROC only")
    click.echo(
        f"wrote {output} (method {method}, k={k}, layers {res.directions.layers}, default layer {res.default_layer})"
    )
