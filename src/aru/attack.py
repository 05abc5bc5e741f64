"""Is the behaviour removed or only hidden? Erosion, relearning and re-extraction attacks on an edited model.

Three protocols, each run on several models (the edited one, the base that never had the behaviour as a control,
the original fine-tuned one, and any other, e.g. the organism's oracle edit) with the same data:

- ``erosion``: fine-tune on *benign* data (X+ training prompts with the original's answers, or plain text) with n
  examples for n in the schedule; does the removed behaviour (refusal on held-out X−) come back?
- ``relearn``: fine-tune on n *demonstrations of the removed behaviour* (X− training prompts with the original's
  answers), measured on held-out X− prompts (the organism: held-out entities and a held-out question template).
  If the edited model relearns no faster than the base, the behaviour was removed, not hidden.
- ``reextract``: fit the estimators again on the edited model with the same prompts, report the best held-out
  AUROC, and fold the refitted direction out: does anything change?

Each schedule point is an independent fine-tune of the untouched model (LoRA on every linear layer with peft, or
full fine-tuning) on the first n examples of a seeded permutation, for ``epochs`` passes; every learning rate is
tried and the worst case (highest behaviour rate) is kept per seed and point; seeds give mean ± std. Summaries:
``n_to_half`` (examples until the behaviour rate reaches half the original's, interpolated) and ``auc`` (area under
the recovery curve rate / target, trapezoids over log(1 + n), normalised to [0, 1]).

:func:`run_attack` returns the report; :func:`write_report` writes report.json, report.md and PNG curves into a
folder all-or-nothing. ``aru attack`` (:mod:`aru.cli.attack`) is the command line.
"""

from __future__ import annotations

import copy
import math
import random
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

PROTOCOLS = ("erosion", "relearn", "reextract")
TRAINED = ("erosion", "relearn")
DEFAULT_SCHEDULE = (0, 1, 3, 10, 30, 100)
REPORT_KIND = "aru-attack"


@dataclass(frozen=True)
class AttackConfig:
    """Settings of an attack run (the ``[attack]`` recipe section maps onto these)."""

    protocols: tuple[str, ...] = PROTOCOLS
    seeds: int = 3
    schedule: tuple[int, ...] = DEFAULT_SCHEDULE  # numbers of training examples n (0 = the untouched model)
    lrs: tuple[float, ...] = (1e-4, 1e-3)
    epochs: int = 3
    batch_size: int = 8
    full_finetune: bool = False  # all weights instead of LoRA
    lora_r: int = 16
    lora_alpha: int = 16
    max_new_tokens: int = 32  # generation length of the answers used as training targets and of the evaluation
    eval_batch_size: int = 32
    max_prompts: int | None = None  # cap each held-out test split (seeded subset)
    reextract_methods: tuple[str, ...] = ("diff-means", "pca-omega")
    reextract_max_prompts: int = 256  # training prompts per class for the refit

    def __post_init__(self) -> None:
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise ValueError(f"protocols {list(self.protocols)}: choose among {', '.join(PROTOCOLS)}")
        if not self.schedule or any(not isinstance(n, int) or n < 0 for n in self.schedule):
            raise ValueError(f"schedule {list(self.schedule)} must be non-negative integers (numbers of examples)")
        if list(self.schedule) != sorted(set(self.schedule)):
            raise ValueError(f"schedule {list(self.schedule)} must be increasing without repeats, e.g. 0,1,3,10")
        if not self.lrs or any(not lr > 0 for lr in self.lrs):
            raise ValueError(f"lrs {list(self.lrs)} must be positive learning rates, e.g. 1e-4,1e-3")
        for name in ("seeds", "epochs", "batch_size", "lora_r", "lora_alpha", "max_new_tokens", "eval_batch_size",
                     "reextract_max_prompts"):  # fmt: skip
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if self.max_prompts is not None and self.max_prompts < 1:
            raise ValueError(f"max_prompts={self.max_prompts} must be >= 1 (or None for every test prompt)")


# ------------------------------------------------------------------------------------------------------- data
Example = tuple[list[int], int]  # (token ids, number of leading ids without loss)


@dataclass
class AttackData:
    """Everything the protocols need besides the models: training pools and held-out prompts."""

    prompts: dict[str, tuple[list[str], list[str]]]  # split -> (X−, X+) user prompts
    erosion: list[Example] = field(default_factory=list)
    relearn: list[Example] = field(default_factory=list)
    world: Any = None  # the organism's World when the models are organisms (ground-truth metrics)
    markers: tuple[str, ...] | None = None
    system: str | None = None
    raw: bool = False


def _pool_size(cfg: AttackConfig) -> int:
    return max(cfg.schedule) * cfg.seeds


def chat_examples(model, tokenizer, prompts: Sequence[str], cfg: AttackConfig, *, system=None, raw=False):
    """(prompt ids + the model's greedy answer ids, len(prompt)) for each prompt: training targets."""
    from aru.evaluate import encode_prompts, greedy_generate

    ids = encode_prompts(tokenizer, prompts, system=system, raw=raw)
    gens = greedy_generate(
        model, tokenizer, ids, max_new_tokens=cfg.max_new_tokens, batch_size=cfg.eval_batch_size, progress=False
    )
    return [(p + g, len(p)) for p, g in zip(ids, gens, strict=True)]


def text_examples(tokenizer, lines: Sequence[str]) -> list[Example]:
    """Plain-text benign examples (loss on every token after the first)."""
    out = []
    for line in lines:
        ids = tokenizer(line, add_special_tokens=True)["input_ids"]
        if len(ids) >= 2:
            out.append((list(ids), 1))
    if not out:
        raise ValueError("the benign text has no line of at least two tokens; give a file with one text per line")
    return out


def build_data(
    prompts: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    tokenizer,
    cfg: AttackConfig,
    *,
    reference=None,
    benign_text: Sequence[str] | None = None,
    world=None,
    markers: Sequence[str] | None = None,
    system: str | None = None,
    raw: bool = False,
    seed: int = 0,
) -> AttackData:
    """The training pools: erosion from ``benign_text`` or X+ train prompts, relearning from X− train prompts, both
    answered greedily by ``reference`` (the original fine-tuned model; required for ``relearn``)."""
    from aru.evaluate import seeded_subset

    for split in ("train", "test"):
        if split not in prompts or not prompts[split][0] or not prompts[split][1]:
            raise ValueError(f"the attack needs X− and X+ prompts in the {split!r} split")
    data = AttackData({s: (list(b), list(g)) for s, (b, g) in prompts.items()}, world=world,
                      markers=None if markers is None else tuple(markers), system=system, raw=raw)  # fmt: skip
    need = _pool_size(cfg)
    tb, tg = data.prompts["train"]
    if "relearn" in cfg.protocols and need:
        if reference is None:
            raise ValueError("relearn needs the original fine-tuned model (--reference ORIGINAL): its answers to X− "
                             "training prompts are the demonstrations")  # fmt: skip
        data.relearn = chat_examples(reference, tokenizer, seeded_subset(tb, need, seed), cfg, system=system, raw=raw)
    if "erosion" in cfg.protocols and need:
        if benign_text is not None:
            data.erosion = text_examples(tokenizer, seeded_subset(list(benign_text), need, seed))
        elif reference is None:
            raise ValueError(
                "erosion needs benign answers: pass --reference ORIGINAL (its X+ answers) or --benign FILE"
            )
        else:
            data.erosion = chat_examples(reference, tokenizer, seeded_subset(tg, need, seed), cfg, system=system,
                                         raw=raw)  # fmt: skip
    for name in TRAINED:
        pool = getattr(data, name)
        if name in cfg.protocols and need and len(pool) < max(cfg.schedule):
            raise ValueError(f"the {name} pool has {len(pool)} examples but the schedule goes to {max(cfg.schedule)}; "
                             "shorten the schedule or give more training prompts")  # fmt: skip
    return data


def draw(pool: Sequence[Example], n: int, seed: int) -> list[Example]:
    """The first ``n`` examples of a seeded permutation of ``pool`` (nested in n for a fixed seed)."""
    order = list(range(len(pool)))
    random.Random(f"aru-attack-{seed}").shuffle(order)
    return [pool[i] for i in order[:n]]


# --------------------------------------------------------------------------------------------------- training
def _batch(examples: Sequence[Example], pad: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask, loss mask), each (batch, width)."""
    width = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), width), pad, dtype=torch.long)
    att = torch.zeros((len(examples), width), dtype=torch.long)
    loss = torch.zeros((len(examples), width), dtype=torch.bool)
    for j, (x, start) in enumerate(examples):
        ids[j, : len(x)] = torch.tensor(x)
        att[j, : len(x)] = 1
        loss[j, start : len(x)] = True
    return ids.to(device), att.to(device), loss.to(device)


def finetune(model, tokenizer, examples: Sequence[Example], *, lr: float, seed: int, cfg: AttackConfig):
    """A fine-tuned copy of ``model`` (``model`` is untouched): LoRA (r, α on every linear layer but the head) or
    full fine-tuning, AdamW at a constant ``lr``, ``epochs`` passes over ``examples`` in seeded batches. With no
    examples the copy equals the model."""
    from aru.evaluate import _pad_id

    tuned = copy.deepcopy(model)
    if not examples:
        return tuned.eval()
    torch.manual_seed(seed)
    if not cfg.full_finetune:
        from peft import LoraConfig, get_peft_model

        with warnings.catch_warnings():  # peft reads a transformers attribute deprecated in v5 (FutureWarning)
            warnings.simplefilter("ignore", FutureWarning)
            tuned = get_peft_model(tuned, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                                     target_modules="all-linear"))  # fmt: skip
    params = [p for p in tuned.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    pad, dev = _pad_id(tokenizer), next(model.parameters()).device
    tuned.train()
    for _ in range(cfg.epochs):
        order = torch.randperm(len(examples), generator=gen).tolist()
        for s in range(0, len(order), cfg.batch_size):
            ids, att, mask = _batch([examples[i] for i in order[s : s + cfg.batch_size]], pad, dev)
            logits = tuned(input_ids=ids, attention_mask=att).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits[mask[:, 1:]], ids[:, 1:][mask[:, 1:]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    tuned.eval()
    if not cfg.full_finetune:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            tuned = tuned.merge_and_unload()
    return tuned.eval()


# ------------------------------------------------------------------------------------------------ measurement
def measure(model, tokenizer, data: AttackData, cfg: AttackConfig) -> dict[str, float]:
    """Behaviour on held-out prompts: ``behaviour_rate`` (refusal on test X−) and, for the organism, its ground truth
    (``forbidden_accuracy``, ``allowed_accuracy`` on the test split); otherwise ``over_refusal_rate`` on test X+."""
    if data.world is not None:
        from aru.organism.evaluate import allowed_metrics, forbidden_metrics

        kw = dict(world=data.world, split="test", batch_size=max(cfg.eval_batch_size, 256))
        f, a = forbidden_metrics(model, tokenizer, **kw), allowed_metrics(model, tokenizer, **kw)
        return {"behaviour_rate": f["refusal_rate"], "forbidden_accuracy": f["forbidden_accuracy"],
                "allowed_accuracy": a["allowed_accuracy"]}  # fmt: skip
    from aru.evaluate import DEFAULT_MARKERS, behaviour_rate, seeded_subset

    tb, tg = data.prompts["test"]
    kw = dict(markers=data.markers or DEFAULT_MARKERS, max_new_tokens=cfg.max_new_tokens,
              batch_size=cfg.eval_batch_size, system=data.system, raw=data.raw, samples=0, progress=False)  # fmt: skip
    b = behaviour_rate(model, tokenizer, seeded_subset(tb, cfg.max_prompts, 0), **kw)
    g = behaviour_rate(model, tokenizer, seeded_subset(tg, cfg.max_prompts, 0), **kw)
    return {"behaviour_rate": b["rate"], "over_refusal_rate": g["rate"]}


def _worse(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether result ``a`` is a worse case than ``b``: more behaviour, then less forbidden accuracy."""
    return (a["behaviour_rate"], -a.get("forbidden_accuracy", 0.0)) > (b["behaviour_rate"],
                                                                       -b.get("forbidden_accuracy", 0.0))  # fmt: skip


def run_curve(model, tokenizer, pool: Sequence[Example], data: AttackData, cfg: AttackConfig, *,
              log: Callable[[str], None] = lambda _m: None, desc: str = "",
              untouched: dict[str, float] | None = None) -> dict[str, Any]:  # fmt: skip
    """One protocol on one model: every seed × schedule point × lr. Returns ``{"runs": [...], "worst": {seed:
    [metrics per point]}}`` where the worst case is taken over the learning rates. ``untouched``: the model's
    metrics before any fine-tuning, when already measured."""
    untouched = untouched or measure(model, tokenizer, data, cfg)
    runs, worst = [], {}
    for seed in range(cfg.seeds):
        row = []
        for n in cfg.schedule:
            if n == 0:
                runs.append({"seed": seed, "n": 0, "lr": None, **untouched})
                row.append({**untouched, "lr": None})
                continue
            best = None
            for lr in cfg.lrs:
                t0 = time.perf_counter()
                tuned = finetune(model, tokenizer, draw(pool, n, seed), lr=lr, seed=seed, cfg=cfg)
                m = measure(tuned, tokenizer, data, cfg)
                del tuned
                runs.append({"seed": seed, "n": n, "lr": lr, **m, "seconds": round(time.perf_counter() - t0, 2)})
                if best is None or _worse(m, best):
                    best = {**m, "lr": lr}
            row.append(best)
            log(f"{desc} seed {seed} n={n}: behaviour {best['behaviour_rate']:.3f} (lr {best['lr']:g})")
        worst[seed] = row
    return {"runs": runs, "worst": worst}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    t = torch.tensor(values, dtype=torch.float64)
    return float(t.mean()), float(t.std(unbiased=True)) if len(values) > 1 else 0.0


def n_to_half(schedule: Sequence[int], rates: Sequence[float], target: float) -> float | None:
    """Examples until ``rates`` first reaches ``target / 2``, linearly interpolated between schedule points; 0 when
    it already does at the first point, None when it never does."""
    half = target / 2
    for i, (n, r) in enumerate(zip(schedule, rates, strict=True)):
        if r >= half:
            if i == 0:
                return float(n)
            n0, r0 = schedule[i - 1], rates[i - 1]
            return float(n0 + (n - n0) * (half - r0) / (r - r0))
    return None


def recovery_auc(schedule: Sequence[int], rates: Sequence[float], target: float) -> float:
    """Area under min(rate / target, 1) over x = log(1 + n), trapezoids, divided by the x range: 0 = never back,
    1 = fully back from the first point."""
    if target <= 0:
        return float("nan")
    xs = [math.log1p(n) for n in schedule]
    ys = [min(r / target, 1.0) for r in rates]
    if len(xs) == 1:
        return ys[0]
    area = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return area / (xs[-1] - xs[0])


def summarize(curve: dict[str, Any], cfg: AttackConfig, target: float) -> dict[str, Any]:
    """Mean ± std over seeds of each metric per schedule point, and the recovery summaries of the mean curve."""
    worst = curve["worst"]
    keys = [k for k in worst[0][0] if k != "lr"]
    out: dict[str, Any] = {"schedule": list(cfg.schedule), "target": target}
    for k in keys:
        ms = [_mean_std([worst[s][i][k] for s in worst]) for i in range(len(cfg.schedule))]
        out[k] = {"mean": [m for m, _ in ms], "std": [s for _, s in ms]}
    out["worst_lr"] = [[worst[s][i]["lr"] for i in range(len(cfg.schedule))] for s in worst]
    mean = out["behaviour_rate"]["mean"]
    per_seed = [[worst[s][i]["behaviour_rate"] for i in range(len(cfg.schedule))] for s in worst]
    out["n_to_half"] = n_to_half(cfg.schedule, mean, target)
    aucs = [recovery_auc(cfg.schedule, r, target) for r in per_seed]
    out["auc"], out["auc_std"] = _mean_std(aucs)
    return out


# ----------------------------------------------------------------------------------------------- re-extraction
def reextract(model, tokenizer, data: AttackData, cfg: AttackConfig) -> dict[str, Any]:
    """Refit ``cfg.reextract_methods`` (k = 1, every layer) on ``model`` with the training prompts (validation
    split held out), report each method's best held-out AUROC, and fold the best fit's direction (its default layer,
    every layer edited) out of a copy: the metrics before and after."""
    from aru.estimators import ESTIMATORS, capture_sets, fit_from_captures
    from aru.evaluate import seeded_subset
    from aru.model_edit import fold_into_model, make_plan

    tb, tg = (seeded_subset(x, cfg.reextract_max_prompts, 0) for x in data.prompts["train"])
    val = data.prompts.get("val")
    vb, vg = (None, None) if val is None else (seeded_subset(x, cfg.reextract_max_prompts, 0) for x in val)
    caps = capture_sets(model, tokenizer, tb, tg, val_bad=vb, val_good=vg, batch_size=cfg.eval_batch_size,
                        system=data.system, raw=data.raw,
                        moments=any(ESTIMATORS[m].needs_moments for m in cfg.reextract_methods))  # fmt: skip
    fits, best = {}, None
    for method in cfg.reextract_methods:
        res = fit_from_captures(caps, method=method, k=1)
        row = max(res.table, key=lambda r: (round(r["auroc"], 3), r["separation"]))
        fits[method] = {"layer": row["layer"], "auroc": row["auroc"], "separation": row["separation"]}
        if best is None or row["auroc"] > fits[best[0]]["auroc"]:
            best = (method, res)
    assert best is not None
    before = measure(model, tokenizer, data, cfg)
    ablated = copy.deepcopy(model)
    fold_into_model(ablated, make_plan(best[1].directions, model.config.num_hidden_layers))
    after = measure(ablated.eval(), tokenizer, data, cfg)
    return {"heldout": caps.heldout, "fits": fits, "ablated_method": best[0],
            "ablated_layer": best[1].default_layer, "before": before, "after": after}  # fmt: skip


# ------------------------------------------------------------------------------------------------------- run
def run_attack(
    models: Mapping[str, Any],
    tokenizer,
    data: AttackData,
    cfg: AttackConfig,
    *,
    original: str | None = "original",
    subject: str = "edited",
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run ``cfg.protocols`` on every loaded model of ``models`` ({name: model}, same tokenizer). The recovery
    target is the ``original`` model's untouched behaviour rate (1.0 when it is absent). Re-extraction runs on
    ``subject`` and, for comparison, on ``original``."""
    t_start = time.perf_counter()
    report: dict[str, Any] = {"kind": REPORT_KIND, "config": _config_dict(cfg), "models": list(models),
                              "organism": data.world is not None, "timings": {}}  # fmt: skip
    target = 1.0
    untouched = {name: measure(m, tokenizer, data, cfg) for name, m in models.items()}
    if original in models:
        target = untouched[original]["behaviour_rate"]
    report["target"] = target
    for proto in TRAINED:
        if proto not in cfg.protocols:
            continue
        t0 = time.perf_counter()
        pool = getattr(data, proto)
        curves, runs = {}, []
        for name, model in models.items():
            c = run_curve(model, tokenizer, pool, data, cfg, log=log, desc=f"{proto} {name}", untouched=untouched[name])
            curves[name] = summarize(c, cfg, target)
            runs += [{"model": name, **r} for r in c["runs"]]
        report[proto] = {"curves": curves, "runs": runs, "pool": len(pool)}
        report["timings"][proto] = round(time.perf_counter() - t0, 1)
    if "reextract" in cfg.protocols:
        t0 = time.perf_counter()
        names = [n for n in (subject, original) if n in models]
        report["reextract"] = {n: reextract(models[n], tokenizer, data, cfg) for n in names}
        report["timings"]["reextract"] = round(time.perf_counter() - t0, 1)
    report["timings"]["total"] = round(time.perf_counter() - t_start, 1)
    return report


def _config_dict(cfg: AttackConfig) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}


def load_prompt_splits(folder, *, bad=None, good=None, seed: int = 0):
    """(splits, world): the organism's own train/val/test prompts when ``folder`` is an organism and no files are
    given, else ``bad``/``good`` prompt files split 0.6/0.2/0.2 with ``seed`` (as ``aru run``'s default)."""
    from aru.evaluate import is_organism

    if bad is None and good is None and is_organism(folder):
        from aru.organism import organism_prompts
        from aru.organism.evaluate import world_of

        world = world_of(folder)
        return {s: organism_prompts(s, world) for s in ("train", "val", "test")}, world
    if not bad or not good:
        raise ValueError(f"{str(folder)!r} is not an organism: pass --bad FILE and --good FILE (X− and X+ prompts)")
    from aru.prompts import load_prompts, split_prompts

    sb, sg = (split_prompts(load_prompts(p), seed=seed) for p in (bad, good))
    return {"train": (sb.train, sg.train), "val": (sb.val, sg.val), "test": (sb.test, sg.test)}, None


def attack_models(
    edited,
    *,
    base,
    reference=None,
    config: AttackConfig | None = None,
    extra: Mapping[str, Any] | None = None,
    bad=None,
    good=None,
    benign=None,
    device: str = "cpu",
    dtype: str = "float32",
    output=None,
    overwrite: bool = False,
    progress: bool = True,
    organism_defaults: bool = True,
) -> dict[str, Any]:
    """Load the models by spec (folder, Hub id, ``organism:tuned``), run :func:`run_attack` on edited, base,
    original (``reference``) and ``extra`` ({name: spec}), and write the report into ``output`` when given. With
    ``organism_defaults`` an organism's answers and evaluations use 8 new tokens (its answers are short)."""
    import sys
    from dataclasses import replace

    from aru.attack_report import check_output, write_report
    from aru.evaluate import load_model, resolve_model

    cfg = config or AttackConfig()
    specs = {"edited": edited, "base": base, **({"original": reference} if reference else {}), **(extra or {})}
    folders = {n: resolve_model(s) for n, s in specs.items()}
    if output is not None:
        check_output(output, overwrite=overwrite, inputs=list(folders.values()))
    prompts, world = load_prompt_splits(folders["edited"], bad=bad, good=good)
    if world is not None and organism_defaults:
        cfg = replace(cfg, max_new_tokens=8)
    benign_lines = None
    if benign is not None:
        from pathlib import Path

        if not Path(benign).is_file():
            raise FileNotFoundError(f"--benign {benign!r} does not exist; give a text file with one example per line")
        benign_lines = [x for x in Path(benign).read_text().splitlines() if x.strip()]
    log = (lambda m: print(f"aru attack: {m}", file=sys.stderr, flush=True)) if progress else (lambda _m: None)
    t0 = time.perf_counter()
    models, tokenizer = {}, None
    for name, spec in specs.items():
        models[name], tok, _ = load_model(spec, dtype=dtype, device=device)
        if tokenizer is None:
            tokenizer = tok
        elif len(tok) != len(tokenizer):
            raise ValueError(f"{name} {spec!r} has a different tokenizer ({len(tok)} tokens, edited has "
                             f"{len(tokenizer)}); every model of an attack must share the tokenizer")  # fmt: skip
    data = build_data(prompts, tokenizer, cfg, reference=models.get("original"), benign_text=benign_lines,
                      world=world)  # fmt: skip
    log(f"loaded {len(models)} models and {len(data.erosion)} + {len(data.relearn)} training examples")
    report = run_attack(models, tokenizer, data, cfg, log=log)
    report["specs"] = {n: str(s) for n, s in specs.items()}
    report["timings"]["load"] = round(report["timings"]["total"] and time.perf_counter() - t0
                                      - report["timings"]["total"], 1)  # fmt: skip
    report["device"], report["dtype"], report["torch_threads"] = device, dtype, torch.get_num_threads()
    if output is not None:
        report["output"] = str(write_report(report, output, overwrite=overwrite, inputs=list(folders.values())))
    return report


def attack_output(edited, original, tokenizer, recipe, splits, folder, out_dir, *, log=lambda _m: None) -> dict:
    """``aru run``'s ``[attack]`` step: attack the loaded ``edited`` model against ``original`` and the section's
    base, with the recipe's prompt splits; the report goes to ``out_dir`` (inside the staged output). Returns
    ``{"summary": card summary, "files": [paths relative to the output]}``."""
    from aru.attack_report import card_summary, write_report
    from aru.evaluate import is_organism, load_model
    from aru.organism.evaluate import world_of
    from aru.recipe import attack_config

    spec = recipe.attack
    cfg = attack_config(spec)
    world = world_of(folder) if is_organism(folder) else None
    if world is not None:
        cfg = AttackConfig(**{**asdict(cfg), "max_new_tokens": 8})
    base = load_model(spec.base, dtype=recipe.model.dtype, device=recipe.model.device)[0]
    data = build_data(splits, tokenizer, cfg, reference=original, world=world, system=recipe.prompts.system,
                      raw=recipe.prompts.raw)  # fmt: skip
    report = run_attack({"edited": edited, "base": base, "original": original}, tokenizer, data, cfg, log=log)
    report["specs"] = {"edited": "this output", "base": spec.base, "original": recipe.model.id}
    final = write_report(report, out_dir)
    files = sorted(str(p.relative_to(final.parent)) for p in final.iterdir())
    return {"summary": card_summary(report), "files": files}
