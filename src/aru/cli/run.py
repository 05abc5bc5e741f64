"""``aru run``: one recipe from prompts to a verified, evaluated checkpoint."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("run")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False), help="Override edit.output.")
@click.option("--overwrite", is_flag=True, default=None, help="Replace an existing output folder.")
@click.option("--no-push", is_flag=True, help="Skip the recipe's [push] section.")
@click.option("--check", "check_only", is_flag=True, help="Only parse and validate the recipe.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def run(recipe, output, overwrite, no_push, check_only, quiet, as_json) -> None:
    """Run RECIPE (TOML): prompts → fit → select → edit → verify → evaluate → report (→ push).

    The output folder holds the edited checkpoint, aru.json, report.md and report.json.

    \b
    Examples:
      aru run recipes/organism.toml -o organism-unlearned/
      aru run recipes/llama-3.2-1b-instruct.toml --check
      aru run my-recipe.toml --overwrite --json
    """
    from aru.recipe import load_recipe

    rec = load_recipe(recipe)
    if check_only:
        from aru.inputcheck import check_recipe_files

        check_recipe_files(rec)
        click.echo(json.dumps(rec.to_dict(), indent=2) if as_json else f"{recipe}: valid recipe")
        return
    from aru.pipeline import run_recipe

    res = run_recipe(rec, output=output, overwrite=overwrite, push=not no_push, progress=not quiet)
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2, default=str))
        return
    click.echo(res.markdown)
    click.echo(f"wrote {res.output}" + (f"; pushed {res.pushed}" if res.pushed else ""))
