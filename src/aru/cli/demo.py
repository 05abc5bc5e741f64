"""``aru demo``: the organism recipe end to end, offline, with the before/after table."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("demo")
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False),
              help="Keep the edited organism here (default: a temporary folder, removed).")  # fmt: skip
@click.option("--overwrite", is_flag=True, help="Replace an existing --output folder.")
@click.option("--organism", default="toy", show_default=True, type=click.Choice(["toy", "real"]),
              help="toy: the 4-layer built-in organism (~1 min); real: SmolLM2-135M taught to refuse.")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the demo's numbers as JSON.")
@handle_errors
def demo(output, overwrite, organism, quiet, as_json) -> None:
    """Remove the built-in organism's fine-tuned refusal automatically and show what came back.

    Runs recipes/organism.toml (fit, automatic selection, edit, verify, evaluate) offline in about a minute on
    2 cores, then prints the fine-tuned organism against the edited one, with the oracle direction as the
    ceiling. Exits 1 if a target is missed.

    \b
    Examples:
      aru demo
      aru demo -o organism-unlearned/ && aru verify organism-unlearned/
      aru demo --organism real     # SmolLM2-135M-Instruct taught to refuse (tens of minutes on 2 cores)
    """
    from aru.pipeline import run_demo

    res = run_demo(output=output, overwrite=overwrite, progress=not quiet, organism=organism)
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
    else:
        click.echo(res["text"])
    if not all(c["passed"] for c in res["checks"]):
        raise SystemExit(1)
