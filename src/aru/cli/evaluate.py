"""``aru eval``: behaviour rate, over-refusal, KL and retain perplexity of an edited model against its original."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("eval")
@click.argument("model")
@click.option("--base", "base", default=None, help="The original model (folder, Hub id or organism:tuned) for KL.")
@click.option("--bad", "bad", required=True, help="Held-out X− prompts (.txt/.jsonl/.json/.csv or hf://...).")
@click.option("--good", "good", required=True, help="Held-out X+ prompts (over-refusal and KL).")
@click.option("--retain", default=None, type=click.Path(exists=True, dir_okay=False), help="Retain text file (CE).")
@click.option("--marker", "markers", multiple=True, help="Refusal marker (repeatable; 're:' for a regex).")
@click.option("--no-default-markers", is_flag=True, help="Use only the --marker values.")
@click.option("--max-new-tokens", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--kl-tokens", default=8, show_default=True, type=click.IntRange(min=1), help="T for the KL.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--limit", default=None, type=click.IntRange(min=1), help="Use only the first N prompts of each file.")
@click.option("--system", default=None, help="System prompt for the chat template.")
@click.option("--raw", is_flag=True, help="Use the prompts as plain text (no chat template).")
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"]))
@click.option("--device", default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@handle_errors
def eval_cmd(
    model, base, bad, good, retain, markers, no_default_markers, max_new_tokens, kl_tokens, batch_size, limit,
    system, raw, dtype, device, as_json,
) -> None:  # fmt: skip
    """Evaluate MODEL (and --base, the original) on held-out prompts; print one row per model.

    The organism's ground truth is added when MODEL is an organism folder.

    \b
    Examples:
      aru organism prompts -o prompts/
      aru eval edited/ --base organism:tuned --bad prompts/bad_test.txt --good prompts/good_test.txt
      aru eval edited/ --base meta-llama/Llama-3.2-1B-Instruct --bad bad.txt --good good.txt --retain wiki.txt --json
    """
    from aru.evaluate import DEFAULT_MARKERS, EvalConfig, evaluate, is_organism, load_model, rows_markdown
    from aru.prompts import load_prompts

    marks = tuple(markers) if no_default_markers else DEFAULT_MARKERS + tuple(markers)
    cfg = EvalConfig(
        markers=marks, max_new_tokens=max_new_tokens, kl_tokens=kl_tokens, batch_size=batch_size, system=system,
        raw=raw,
    )  # fmt: skip
    bad_p, good_p = load_prompts(bad), load_prompts(good)
    if limit:
        bad_p, good_p = bad_p[:limit], good_p[:limit]
    m, tok, folder = load_model(model, dtype=dtype, device=device)
    original = load_model(base, dtype=dtype, device=device)[0] if base else None
    rows = evaluate(
        m, tok, original=original, bad=bad_p, good=good_p, retain=retain, config=cfg, organism=is_organism(folder),
        names=("base", "model"),
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(rows_markdown(rows))
    for r in rows:
        if r["markers_bad"]:
            top = ", ".join(f"{k!r}: {v}" for k, v in list(r["markers_bad"].items())[:3])
            click.echo(f"{r['model']}: markers matched on X−: {top}")
