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
@click.option("--method", default="pca-omega", show_default=True, help="pca-omega, diff-means or projected.")
@click.option(
    "--layers", default=None, help="Capture points, e.g. '4', '2,5', '2-6', '-1', 'all' (0..L) [default: 1..L]."
)
@click.option("--k", "k", default=1, show_default=True, type=int, help="Directions per layer.")
@click.option("--position", default="last", show_default=True, help="last, mean:N or all (post-instruction tokens).")
@click.option("--batch-size", default=16, show_default=True, type=int)
@click.option(
    "--pca",
    type=click.Choice(["uncentred", "centred"]),
    default="uncentred",
    show_default=True,
    help="pca-omega: PCA of the second moment (uncentred) or of the covariance (centred).",
)
@click.option(
    "--score",
    type=click.Choice(["omega", "std", "fisher"]),
    default="omega",
    show_default=True,
    help="pca-omega: |E|/Var (omega), scale-free |E|/std, or the Fisher ratio.",
)
@click.option(
    "--top-m", default=None, type=int, help="pca-omega: only the top M components by variance are candidates."
)
@click.option("--val-bad", default=None, help="Held-out X− for the AUROC (default: 20%% split off --bad).")
@click.option("--val-good", default=None, help="Held-out X+ (default: 20%% split off --good).")
@click.option("--holdout", default=0.2, show_default=True, type=float, help="Fraction held out when no --val-* given.")
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
    as_json,
) -> None:
    """Fit the directions separating --bad (X−) from --good (X+) prompts at each layer of MODEL.

    Prints a per-layer table (score, held-out AUROC, d′, cosine with diff-means, explained variance, variance
    rank) and writes the directions (one basis per layer, default_layer = best held-out AUROC) to OUTPUT.

    \b
    Examples:
      aru fit ./organism --bad bad_train.txt --good good_train.txt -o dirs.safetensors
      aru fit meta-llama/Llama-3.2-1B-Instruct --bad hf://datasets/org/set/harmful.jsonl \\
          --good harmless.csv --column goal --layers 8-15 --k 2 -o dirs.safetensors --json
    """
    from aru.capture import parse_layers
    from aru.estimators import fit_to_file, format_table

    ctx = click.get_current_context()
    explicit = [
        f"--{n.replace('_', '-')}"
        for n in ("pca", "score", "top_m")
        if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE
    ]
    if method != "pca-omega" and explicit:
        raise click.UsageError(f"{', '.join(explicit)} apply only to --method pca-omega, not {method}")
    est = {"pca": pca, "score": score, "top_m": top_m} if method == "pca-omega" else {}
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
        **est,
    )
    if as_json:
        click.echo(json.dumps({**res.to_dict(), "output": str(output)}, indent=2))
        return
    click.echo(format_table(res))
    click.echo(
        f"wrote {output} (method {method}, k={k}, layers {res.directions.layers}, default layer {res.default_layer})"
    )
