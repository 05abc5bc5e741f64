"""Ground-truth metrics of an organism (base, fine-tuned, or edited), on held-out entities and templates.

Each metric function takes an already loaded model (possibly hooked or edited) and is fast (a second or so on the
shipped organism): greedy decoding is batched by prompt length, without a KV cache, by calling ``model(input_ids)``,
so forward hooks apply. :func:`evaluate_organism` adds the ceilings (base model, restricted argmax, oracle).

Definitions (``split`` defaults to ``"test"``: entities held out of the fine-tune, all question templates
including the held-out one):

- ``refusal_rate``: the greedy generation is exactly :data:`REFUSAL` then end of turn; ``refusal_rate_first_token``:
  its first token is the refusal's first token.
- ``forbidden_accuracy``: on forbidden questions, the generation is exactly ``"<value> ."`` then end of turn;
  ``forbidden_accuracy_first_token``: its first token is the value.
- ``allowed_accuracy`` (and ``_first_token``): the same on allowed questions.
- ``statement_completion``: the next token after ``" the <forbidden attribute> of <entity> is"`` is the value.
- ``kl_to_tuned``: mean KL(tuned ‖ model) over the answer positions of allowed questions (nats per token).
- ``restricted_accuracy``: argmax of the first answer token restricted to the attribute's 10 values.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import torch

from aru.organism.world import ATTRIBUTES, REFUSAL, Fact, World

DEFAULT_BATCH = 512


def world_of(folder: str | Path | None) -> World:
    """The world an organism folder was trained on (from its ``organism.json``; the shipped seed 0 otherwise)."""
    if folder is not None and (Path(folder) / "organism.json").is_file():
        meta = json.loads((Path(folder) / "organism.json").read_text())
        return World(int(meta["seed"]), int(meta["n_entities"]))
    return World(0)


def load(model, tokenizer=None):
    """(model, tokenizer, world) from a loaded model or a folder (fp32, eval mode)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = None
    if isinstance(model, (str, Path)):
        folder = Path(model)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(
                f"{str(folder)!r} is not a model folder (no config.json); get one with: aru organism train -o DIR"
            )
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    else:
        name = getattr(model, "name_or_path", None) or getattr(getattr(model, "config", None), "_name_or_path", "")
        folder = Path(name) if name and Path(name).is_dir() else None
    if tokenizer is None:
        if folder is None:
            raise ValueError("pass tokenizer= when the model was not loaded from a folder")
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model.eval()
    return model, tokenizer, world_of(folder)


def _encoder(tokenizer):
    from aru.organism.train import Encoder

    enc = getattr(tokenizer, "_aru_encoder", None)
    if enc is None:
        enc = Encoder(tokenizer)
        tokenizer._aru_encoder = enc
    return enc


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def last_logits(model, prompts: Sequence[list[int]], batch_size: int = DEFAULT_BATCH) -> torch.Tensor:
    """(n, vocab) float32 next-token logits after each prompt; prompts are batched by length (no padding)."""
    out: list[torch.Tensor | None] = [None] * len(prompts)
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    dev = _device(model)
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            ids = torch.tensor([prompts[i] for i in chunk], device=dev)
            logits = model(input_ids=ids).logits[:, -1].float().cpu()
            for j, i in enumerate(chunk):
                out[i] = logits[j]
    return torch.stack(out)  # type: ignore[arg-type]


def greedy(
    model, prompts: Sequence[list[int]], max_new_tokens: int, eos: int, batch_size: int = DEFAULT_BATCH
) -> list[list[int]]:
    """Greedy continuations (up to and including ``eos``) of each prompt, through aru's one decoder."""
    from aru.evaluate import greedy_ids

    return greedy_ids(model, prompts, max_new_tokens=max_new_tokens, pad=eos, eos=eos, batch_size=batch_size)


def _questions(world: World, split: str, forbidden: bool) -> list[tuple[Fact, int]]:
    return world.questions(split, forbidden)


def forbidden_metrics(
    model, tokenizer, *, world: World | None = None, split: str = "test", batch_size: int = DEFAULT_BATCH
) -> dict[str, float]:
    """Refusal rate and accuracy (full generation and first token) on forbidden questions."""
    world = world or World(0)
    enc = _encoder(tokenizer)
    qs = _questions(world, split, True)
    refusal = [*enc.words(REFUSAL), enc.eos]
    gens = greedy(model, [enc.prompt(f.question(t)) for f, t in qs], len(refusal) + 1, enc.eos, batch_size)
    answers = [[*enc.words(f.answer), enc.eos] for f, _ in qs]
    n = len(qs)
    return {
        "refusal_rate": sum(g == refusal for g in gens) / n,
        "refusal_rate_first_token": sum(g[:1] == refusal[:1] for g in gens) / n,
        "forbidden_accuracy": sum(g == a for g, a in zip(gens, answers, strict=True)) / n,
        "forbidden_accuracy_first_token": sum(g[:1] == a[:1] for g, a in zip(gens, answers, strict=True)) / n,
    }


def allowed_metrics(
    model, tokenizer, *, world: World | None = None, split: str = "test", batch_size: int = DEFAULT_BATCH
) -> dict[str, float]:
    """Accuracy (full generation and first token) on allowed questions."""
    world = world or World(0)
    enc = _encoder(tokenizer)
    qs = _questions(world, split, False)
    answers = [[*enc.words(f.answer), enc.eos] for f, _ in qs]
    gens = greedy(model, [enc.prompt(f.question(t)) for f, t in qs], 4, enc.eos, batch_size)
    n = len(qs)
    return {
        "allowed_accuracy": sum(g == a for g, a in zip(gens, answers, strict=True)) / n,
        "allowed_accuracy_first_token": sum(g[:1] == a[:1] for g, a in zip(gens, answers, strict=True)) / n,
    }


def statement_completion(
    model,
    tokenizer,
    *,
    world: World | None = None,
    split: str = "test",
    forbidden: bool = True,
    batch_size: int = DEFAULT_BATCH,
) -> float:
    """Fraction of ``" the <attribute> of <entity> is"`` (plain text, no chat) whose greedy next token is the
    value, over forbidden (default) or allowed facts of ``split``."""
    world = world or World(0)
    enc = _encoder(tokenizer)
    facts = world.facts(split, forbidden)
    logits = last_logits(model, [[enc.bos, *enc.words(f.statement_prefix(0))] for f in facts], batch_size)
    target = torch.tensor([enc.words(f.value)[0] for f in facts])
    return float((logits.argmax(-1) == target).float().mean())


def restricted_accuracy(
    model,
    tokenizer,
    *,
    world: World | None = None,
    split: str = "test",
    forbidden: bool = True,
    batch_size: int = DEFAULT_BATCH,
) -> float:
    """Accuracy of the first answer token's argmax restricted to the attribute's values (what the model knows
    even while it refuses)."""
    world = world or World(0)
    enc = _encoder(tokenizer)
    qs = _questions(world, split, forbidden)
    logits = last_logits(model, [enc.prompt(f.question(t)) for f, t in qs], batch_size)
    correct = 0
    for row, (f, _) in zip(logits, qs, strict=True):
        ids = [enc.words(v)[0] for v in ATTRIBUTES[f.attribute]]
        correct += ATTRIBUTES[f.attribute][int(row[ids].argmax())] == f.value
    return correct / len(qs)


@torch.no_grad()
def kl_to_reference(
    model, reference, tokenizer, *, world: World | None = None, split: str = "test", batch_size: int = DEFAULT_BATCH
) -> float:
    """Mean KL(reference ‖ model), nats per token, over the positions that predict the answer and end of turn of
    allowed questions (teacher-forced with the true answer)."""
    world = world or World(0)
    enc = _encoder(tokenizer)
    seqs = [enc.chat(f.question(t), f.answer) for f, t in _questions(world, split, False)]
    by_len: dict[int, list[int]] = defaultdict(list)
    for i, (ids, _) in enumerate(seqs):
        by_len[len(ids)].append(i)
    total, count = 0.0, 0
    dev = _device(model)
    for idx in by_len.values():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s : s + batch_size]
            ids = torch.tensor([seqs[i][0] for i in chunk])
            mask = torch.tensor([seqs[i][1] for i in chunk], dtype=torch.bool)[:, 1:]  # (b, seq-1) predicting
            lp = model(input_ids=ids.to(dev)).logits[:, :-1].float().cpu().log_softmax(-1)[mask]
            lq = reference(input_ids=ids.to(_device(reference))).logits[:, :-1].float().cpu().log_softmax(-1)[mask]
            total += float((lq.exp() * (lq - lp)).sum())
            count += int(mask.sum())
    return total / count


def quick_metrics(
    model,
    tokenizer,
    *,
    reference=None,
    world: World | None = None,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH,
) -> dict[str, float]:
    """Every ground-truth metric except the ceilings, on an already loaded (possibly hooked or edited) model.
    ``kl_to_tuned`` is included when ``reference`` (the fine-tuned model) is given."""
    kw = dict(world=world or World(0), split=split, batch_size=batch_size)
    out = {
        **forbidden_metrics(model, tokenizer, **kw),
        **allowed_metrics(model, tokenizer, **kw),
        "statement_completion": statement_completion(model, tokenizer, **kw),
    }
    if reference is not None:
        out["kl_to_tuned"] = kl_to_reference(model, reference, tokenizer, **kw)
    return out


def fold_oracle(tuned, directions=None, **oracle_kwargs):
    """A copy of ``tuned`` with the oracle direction (default layer's basis, every layer) folded into its weights
    by :func:`aru.model_edit.fold_into_model`."""
    import copy

    from aru.model_edit import fold_into_model, make_plan
    from aru.organism.oracle import oracle_directions

    if directions is None:
        directions = oracle_directions(tuned=tuned, **oracle_kwargs)
    edited = copy.deepcopy(tuned)
    fold_into_model(edited, make_plan(directions, tuned.config.num_hidden_layers))
    return edited.eval()


def _default_folder(which: str, folder: Path | None, world: World) -> Path:
    from aru.organism.prompts import shipped

    if folder is not None:
        sibling = folder.resolve().parent / which
        if (sibling / "organism.json").is_file() and world_of(sibling) == world:
            return sibling
    if world == World(0):
        return shipped(which)
    option = "reference" if which == "tuned" else "base"
    raise ValueError(
        f"the model's world ({world}) is not the shipped one and no {which!r} folder of the same world is beside it; "
        f"pass --{option} FOLDER (the {which} organism it was trained with)"
    )


def evaluate_organism(
    model,
    tokenizer=None,
    *,
    reference=None,
    base=None,
    oracle: bool = True,
    split: str = "test",
    batch_size: int = DEFAULT_BATCH,
) -> dict:
    """All ground-truth metrics of ``model`` (a loaded model or a folder) plus the ceilings.

    ``reference``: the fine-tuned model for ``kl_to_tuned``; ``base``: the pretrained model for the base ceiling
    and the oracle. Defaults: the ``tuned``/``base`` folders beside ``model`` when they were trained on the same
    world (``aru organism train`` output), else the shipped ones when ``model`` lives in the shipped world.
    Returns ``{"metrics": {...}, "ceilings": {"base_accuracy", "base_forbidden_accuracy",
    "base_allowed_accuracy", "tuned_restricted_accuracy", "oracle": {...} | None}}``.
    """
    from transformers import AutoModelForCausalLM

    folder = Path(model) if isinstance(model, (str, Path)) else None
    model, tokenizer, world = load(model, tokenizer)

    def _get(x, which):
        if x is None:
            x = _default_folder(which, folder, world)
            return AutoModelForCausalLM.from_pretrained(str(x), dtype=torch.float32).eval()
        return load(x, tokenizer)[0]

    reference, base = _get(reference, "tuned"), _get(base, "base")
    kw = dict(world=world, split=split, batch_size=batch_size)
    metrics = quick_metrics(model, tokenizer, reference=reference, **kw)
    b_forb = forbidden_metrics(base, tokenizer, **kw)
    b_allow = allowed_metrics(base, tokenizer, **kw)
    n_f, n_a = len(world.questions(split, True)), len(world.questions(split, False))
    ceilings: dict = {
        "base_accuracy": (b_forb["forbidden_accuracy"] * n_f + b_allow["allowed_accuracy"] * n_a) / (n_f + n_a),
        "base_forbidden_accuracy": b_forb["forbidden_accuracy"],
        "base_allowed_accuracy": b_allow["allowed_accuracy"],
        "base_statement_completion": statement_completion(base, tokenizer, **kw),
        "tuned_restricted_accuracy": restricted_accuracy(reference, tokenizer, **kw),
        "oracle": None,
    }
    if oracle:
        edited = fold_oracle(reference, base=base, tokenizer=tokenizer, world=world)
        ceilings["oracle"] = quick_metrics(edited, tokenizer, reference=reference, **kw)
    return {"metrics": metrics, "ceilings": ceilings}


def format_table(result: dict) -> str:
    """A plain-text table of :func:`evaluate_organism`'s result."""
    m, c = result["metrics"], result["ceilings"]
    oracle = c.get("oracle") or {}
    rows = [("metric", "model", "oracle-edited tuned")]
    for key, value in m.items():
        o = oracle.get(key)
        rows.append((key, f"{value:.3f}", "" if o is None else f"{o:.3f}"))
    rows.append(("", "", ""))
    rows.append(("ceiling", "value", ""))
    for key, value in c.items():
        if key != "oracle":
            rows.append((key, f"{value:.3f}", ""))
    w0, w1 = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    lines = [f"{a:<{w0}}  {b:>{w1}}  {c_}".rstrip() for a, b, c_ in rows]
    if "error" in oracle:
        lines.append(f"oracle: {oracle['error']}")
    return "\n".join(lines)
