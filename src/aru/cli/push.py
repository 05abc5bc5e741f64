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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@handle_errors
def push(out, repo_id, private, revision, commit_message, dry_run, token, as_json) -> None:
    """Check OUT's aru.json hashes, write its model card and push it to REPO_ID in one commit.

    \b
    Examples:
      aru push edited/ you/model-unlearned --dry-run
      aru push edited/ you/model-unlearned --private
    """
    from aru.hub import push as do_push

    res = do_push(
        out, repo_id, private=private, revision=revision, commit_message=commit_message, dry_run=dry_run, token=token
    )
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
