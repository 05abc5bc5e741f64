"""``aru gguf``: convert an edited checkpoint to GGUF with llama.cpp's converter, optionally check it."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("gguf")
@click.argument("edited", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", "out_file", required=True, type=click.Path(dir_okay=False), help="FILE.gguf to write.")
@click.option("--outtype", type=click.Choice(["f32", "f16", "bf16", "q8_0"]), default="f32", show_default=True)
@click.option("--check", is_flag=True, help="Compare llama.cpp with transformers; exit 1 beyond tolerance.")
@click.option(
    "--tol",
    type=click.FloatRange(min=0.0),
    default=1e-4,
    show_default=True,
    help="Max |Δlogit| relative to the logit scale.",
)
@click.option("--overwrite", is_flag=True, help="Replace FILE.gguf if it exists.")
@click.option(
    "--install/--no-install", default=True, show_default=True, help="Fetch llama.cpp's converter if it is missing."
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def gguf(edited, out_file, outtype, check, tol, overwrite, install, as_json):
    """Convert EDITED (a Hugging Face folder) to GGUF with llama.cpp's own convert_hf_to_gguf.py.

    \b
    The converter is fetched once from the llama-cpp-python sdist into ~/.cache/aru/llama.cpp/
    (or $ARU_LLAMA_CPP_DIR). --check needs llama-cpp-python (pip install 'aru[gguf]').
    \b
    Examples:
      aru gguf edited/ -o edited.gguf
      aru gguf edited/ -o edited-f16.gguf --outtype f16 --check
    """
    from aru.gguf import compare_gguf, convert

    path = convert(edited, out_file, outtype=outtype, overwrite=overwrite, install=install)
    result = {"gguf": str(path), "outtype": outtype}
    if check:
        result["check"] = compare_gguf(edited, path, tol=tol).to_dict()
    if as_json:
        click.echo(json.dumps(result, indent=2))
    else:
        click.echo(f"wrote {path} ({outtype})")
        if check:
            c = result["check"]
            click.echo(
                f"max |Δlogit| {c['max_abs_dlogit']:.3g} (relative {c['rel_dlogit']:.3g}, tol {tol:g}); "
                f"greedy agreement {c['greedy_agreement']:.3f}; token ids agree: {c['token_ids_agree']} "
                f"({c['n_tokenization_mismatches']} mismatches); {'PASS' if c['passed'] else 'FAIL'}"
            )
    if check and not result["check"]["passed"]:
        raise SystemExit(1)
