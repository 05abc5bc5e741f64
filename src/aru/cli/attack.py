"""``aru attack``: erosion, relearning and re-extraction attacks on an edited model, with curves."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


def _ints(value: str, name: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in value.split(",") if x.strip())
    except ValueError:
        msg = f"{value!r} is not a comma-separated list of integers, e.g. 0,1,3,10"
        raise click.BadParameter(msg, param_hint=name) from None


def _floats(value: str, name: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in value.split(",") if x.strip())
    except ValueError:
        msg = f"{value!r} is not a comma-separated list of numbers, e.g. 1e-4,1e-3"
        raise click.BadParameter(msg, param_hint=name) from None


@click.command("attack")
@click.argument("edited")
@click.option("--base", required=True, help="The model that never had the behaviour (control), e.g. organism:base.")
@click.option("--reference", default=None, help="The original fine-tuned model (its answers are the training data).")
@click.option("--protocol", default="erosion,relearn,reextract", show_default=True,
              help="Comma-separated: erosion, relearn, reextract.")  # fmt: skip
@click.option("--seeds", default=3, show_default=True, type=int)
@click.option("--schedule", default="0,1,3,10,30,100", show_default=True, help="Numbers of training examples n.")
@click.option("--lrs", default="1e-4,1e-3", show_default=True, help="Learning rates (worst case kept).")
@click.option("--epochs", default=3, show_default=True, type=int)
@click.option("--full-finetune", is_flag=True, help="Fine-tune every weight instead of LoRA (tiny models).")
@click.option("--lora-r", default=16, show_default=True, type=int)
@click.option("--bad", default=None, help="X− prompt file (not needed for organisms).")
@click.option("--good", default=None, help="X+ prompt file (not needed for organisms).")
@click.option("--benign", default=None, type=click.Path(dir_okay=False), help="Plain-text erosion data, one per line.")
@click.option("--max-prompts", default=None, type=int, help="Cap each held-out test split.")
@click.option("--max-new-tokens", default=None, type=int, help="Answer/evaluation length (default 32; organism 8).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", show_default=True, type=click.Choice(["float32", "bfloat16", "float16"]))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Report folder.")
@click.option("--overwrite", is_flag=True, help="Replace an earlier attack report in --output.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@handle_errors
def attack(edited, base, reference, protocol, seeds, schedule, lrs, epochs, full_finetune, lora_r, bad, good, benign,
           max_prompts, max_new_tokens, device, dtype, output, overwrite, quiet, as_json) -> None:  # fmt: skip
    """Attack EDITED: does the removed behaviour come back under fine-tuning, and is it still readable?

    Writes report.json, report.md and erosion.png / relearn.png into OUTPUT (all-or-nothing).

    \b
    Examples:
      aru attack organism-unlearned/ --base organism:base --reference organism:tuned -o attack/
      aru attack edited/ --base HuggingFaceTB/SmolLM2-135M-Instruct --reference tuned/ \\
          --bad bad.txt --good good.txt --schedule 0,3,10,30 --seeds 3 -o attack/
    """
    from aru.attack import AttackConfig, attack_models

    cfg = dict(protocols=tuple(p.strip() for p in protocol.split(",") if p.strip()), seeds=seeds,
               schedule=_ints(schedule, "--schedule"), lrs=_floats(lrs, "--lrs"), epochs=epochs,
               full_finetune=full_finetune, lora_r=lora_r, max_prompts=max_prompts)  # fmt: skip
    if max_new_tokens is not None:
        cfg["max_new_tokens"] = max_new_tokens
    res = attack_models(edited, base=base, reference=reference, config=AttackConfig(**cfg), bad=bad, good=good,
                        benign=benign, device=device, dtype=dtype, output=output, overwrite=overwrite,
                        progress=not quiet, organism_defaults=max_new_tokens is None)  # fmt: skip
    if as_json:
        click.echo(json.dumps(res, indent=2, default=str))
        return
    from aru.attack_report import report_markdown

    click.echo(report_markdown(res))
    click.echo(f"wrote {res['output']}")
