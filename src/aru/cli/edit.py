"""``aru edit``: fold a directions file into a checkpoint, streaming, into a new folder."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.command("edit")
@click.argument("model")
@click.option("-d", "--directions", required=True, type=click.Path(exists=True, dir_okay=False), help="From aru fit.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to write.")
@click.option("--layers", default="all", show_default=True, help="Decoder layers to edit: 'all', '3', '2-9', '0,4-6'.")
@click.option("--source-layer", default=None, help="Which fitted basis to use (default: the file's default layer).")
@click.option("--per-layer", is_flag=True, help="Layer i's writers use the basis fitted at residual index i+1.")
@click.option("-k", "--k", type=int, default=None, help="Keep only the first k directions.")
@click.option("--strength", type=float, default=1.0, show_default=True, help="λ in W ← W − λ QᵀQ W; 1 projects.")
@click.option("--keep-tied", is_flag=True, help="Keep tied embeddings tied (edits the output head too: approximate).")
@click.option(
    "--postnorm",
    type=click.Choice(["orthogonal", "oblique"]),
    default="orthogonal",
    show_default=True,
    help="Fold for post-norm blocks (Gemma-2/3, OLMo-2); both are approximate.",
)
@click.option(
    "--dtype",
    type=click.Choice(["float32", "float64"]),
    default="float32",
    show_default=True,
    help="Precision of the fold arithmetic; every tensor keeps its own dtype.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["checkpoint", "peft"]),
    default="checkpoint",
    show_default=True,
    help="checkpoint: the folded model; peft: an exact LoRA adapter (MBs) to load on top of MODEL.",
)
@click.option(
    "--adapter-bias",
    type=click.Choice(["auto", "lora_bias", "replace"]),
    default="auto",
    show_default=True,
    help="peft: edited biases as lora_B.bias (lora_bias) or as whole folded modules in modules_to_save (replace).",
)
@click.option(
    "--adapter-dtype",
    type=click.Choice(["float32", "bfloat16", "float16"]),
    default="float32",
    show_default=True,
    help="peft: dtype of the stored LoRA factors.",
)
@click.option("--revision", default=None, help="Hub revision when MODEL is a Hub id.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@handle_errors
def edit(
    model,
    directions,
    output,
    layers,
    source_layer,
    per_layer,
    k,
    strength,
    keep_tied,
    postnorm,
    dtype,
    fmt,
    adapter_bias,
    adapter_dtype,
    revision,
    force,
    as_json,
):
    """Write OUTPUT: MODEL (a local folder or a Hub id) with the directions projected out of every weight that
    writes into the residual stream. The input is never modified; OUTPUT appears only when complete.

    \b
    Examples:
      aru edit ./my-model -d dirs.safetensors -o ./my-model-unlearned
      aru edit Qwen/Qwen2.5-0.5B-Instruct -d dirs.safetensors -o out/ --layers 4-20 --strength 0.8
      aru edit ./my-model -d dirs.safetensors --format peft -o ./my-adapter
    """
    src = int(source_layer) if source_layer not in (None, "all") else source_layer
    kw = dict(
        layers=layers, source_layer=src, per_layer=per_layer, k=k, strength=strength, keep_tied=keep_tied,
        postnorm=postnorm, dtype=dtype, force=force, revision=revision,
    )  # fmt: skip
    if fmt == "peft":
        from aru.lora import export_adapter

        result = export_adapter(model, directions, output, adapter_bias=adapter_bias, adapter_dtype=adapter_dtype, **kw)
        if as_json:
            click.echo(json.dumps(result.to_dict(), indent=2))
            return
        click.echo(
            f"wrote {result.output}: LoRA adapter, r = {result.rank}, {len(result.targets)} targets, "
            f"{result.bytes_written / 1e6:.3f} MB (the checkpoint is {result.checkpoint_bytes / 1e6:.1f} MB) "
            f"in {result.seconds:.1f} s"
        )
        if result.modules_to_save:
            click.echo(f"stored whole (edited biases, see --adapter-bias): {len(result.modules_to_save)} modules")
        if result.untied:
            click.echo("tied embeddings: the adapter edits the input embedding only; the output head is unchanged")
        for msg in result.approximate:
            click.echo(f"APPROXIMATE: {msg}")
        for msg in result.vllm_notes:
            click.echo(f"vLLM: {msg}")
        click.echo(f"check it with: aru verify {result.output}")
        return
    from aru.checkpoint import edit_checkpoint

    result = edit_checkpoint(model, directions, output, **kw)
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2))
        return
    click.echo(
        f"wrote {result.output}: {len(result.edited)} tensors edited, {result.bytes_written / 1e6:.1f} MB "
        f"in {result.seconds:.1f} s"
    )
    if result.untied:
        click.echo(
            "untied the embeddings: the output head keeps the original matrix and tie_word_embeddings = false "
            "(--keep-tied keeps them tied, approximately)"
        )
    for msg in result.approximate:
        click.echo(f"APPROXIMATE: {msg}")
    if result.skipped_files:
        click.echo(f"not copied (other weight formats, unedited): {', '.join(result.skipped_files)}")
    click.echo(f"check it with: aru verify {result.output}")
