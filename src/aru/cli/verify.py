"""``aru verify``: the edited checkpoint must equal the base model with projection hooks."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("verify")
@click.argument("edited", type=click.Path(exists=True, file_okay=False))
@click.option("--base", default=None, help="The unedited model (default: the input recorded in aru.json).")
@click.option(
    "-d",
    "--directions",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="The directions file (default: the one recorded in aru.json).",
)
@click.option(
    "--tol",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Max |Δlogit| / max |logit| (default by dtype: f32 1e-4).",
)
@click.option(
    "--accept-approximate",
    is_flag=True,
    help="Pass approximate (post-norm) edits beyond tolerance (their deviation is still printed).",
)
@click.option(
    "--gguf",
    "gguf_file",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="Also compare this GGUF (from aru gguf) with EDITED in transformers.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def verify(edited, base, directions, tol, accept_approximate, gguf_file, as_json):
    """Run BASE with hooks that project every writer's output and EDITED with none, on the same tokens;
    print max |Δlogit| and the leak (max |Q h| / |h| over decoder-layer outputs). Exit 1 above tolerance.
    EDITED may be a PEFT adapter folder: it is loaded on BASE with PEFT, and also merged (merge_and_unload).

    \b
    Examples:
      aru verify edited/
      aru verify edited/ --base ./my-model -d dirs.safetensors --json
      aru verify edited/ --gguf edited.gguf
      aru verify adapter/ --base ./my-model      (an adapter from aru edit --format peft)
    """
    from aru.verify import verify_edit

    result = verify_edit(edited, base, directions, tol=tol)
    ok = result.passed or (accept_approximate and not result.exact)
    report = result.to_dict()
    if gguf_file:
        from aru.gguf import compare_gguf

        report["gguf"] = compare_gguf(edited, gguf_file).to_dict()
        ok = ok and report["gguf"]["passed"]
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        leak = "n/a" if result.leak is None else f"{result.leak:.2e} (base model: {result.base_leak:.2e})"
        click.echo(
            f"max |Δlogit| {result.max_abs_dlogit:.3g} (relative {result.rel_dlogit:.2e}, tol {result.tol:g}, "
            f"{result.checkpoint_dtype}); leak {leak}"
        )
        if result.merged_rel_dlogit is not None:
            click.echo(f"adapter merged with merge_and_unload: relative max |Δlogit| {result.merged_rel_dlogit:.2e}")
        if not result.exact:
            click.echo(
                "APPROXIMATE: post-norm family; the deviation above is the fold's approximation error "
                f"(vs the unedited model: relative {result.rel_dlogit_vs_base:.2e})"
                + ("" if result.passed else "; --accept-approximate ships it anyway")
            )
        if gguf_file:
            g = report["gguf"]
            click.echo(
                f"GGUF: max |Δlogit| {g['max_abs_dlogit']:.3g} (relative {g['rel_dlogit']:.2e}), "
                f"greedy agreement {g['greedy_agreement']:.3f}, token ids agree {g['token_ids_agree']}"
            )
        click.echo("PASS" if ok else "FAIL")
    if not ok:
        raise SystemExit(1)
