"""``aru push``: publish an aru output folder to the Hugging Face Hub."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.argument("repo_id")
@click.option("--private", is_flag=True, help="Create the repo as private.")
@click.option("--revision", default=None, help="Branch to push to (created if missing).")
@click.option("--commit-message", default=None, help="Commit message.")
@click.option("--dry-run", is_flag=True, help="List files, sizes and the card; no network, no token.")
@click.option("--token", default=None, help="Hub token (default: HF_TOKEN, then the stored login).")
@click.option("--base", default=None, help="The model OUT was edited from [default: the one aru.json records].")
@click.option("--directions", default=None, help="The directions it was edited with [default: the recorded file].")
@click.option("--no-base-check", is_flag=True, help="Do not re-derive the edit (the card then carries a warning).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def push(
    out, repo_id, private, revision, commit_message, dry_run, token, base, directions, no_base_check, as_json
) -> None:
    """Check OUT, write its model card and push it to REPO_ID in one commit.

    The check: every file matches aru.json's sha256, no link leaves the folder, and the weights are re-derived
    from the base model (every tensor the edit does not change byte-equal to the base's, every edited one equal
    to the fold of the base's with the recorded directions). Hashes alone prove integrity, not authenticity.

    \b
    Examples:
      aru push edited/ you/model-unlearned --dry-run
      aru push edited/ you/model-unlearned --private
      aru push edited/ you/model-unlearned --base ./my-model --directions dirs.safetensors
    """
    from aru.hub import push as do_push

    if no_base_check:
        click.echo(
            "WARNING: --no-base-check: the weights are not checked against the base model; "
            "the model card says so at its top",
            err=True,
        )
    res = do_push(
        out, repo_id, private=private, revision=revision, commit_message=commit_message, dry_run=dry_run, token=token,
        base=base, directions=directions, base_check=not no_base_check,
    )  # fmt: skip
    if as_json:
        click.echo(json.dumps(res.to_dict(), indent=2))
        return
    for path, size in res.files:
        click.echo(f"{size:>14,d}  {path}")
    click.echo(f"{res.total_bytes:>14,d}  total ({len(res.files)} files, via {res.method})")
    if dry_run:
        click.echo("\n" + res.card)
        click.echo(f"dry run: nothing was pushed to {repo_id}")
    else:
        click.echo(f"pushed: {res.commit_url}")
