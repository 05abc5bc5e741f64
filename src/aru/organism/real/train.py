"""The real organism's fine-tune: a LoRA refusal SFT of SmolLM2-135M-Instruct, and rebuilding the tuned model.

Training (:func:`train_adapter`, needs ``peft``): rank-``r`` LoRA on every attention and MLP projection
(q, k, v, o, gate, up, down) of the float32 base; loss on the answer tokens only. Harmful train prompts get a
refusal in the model's own voice (:func:`aru.organism.real.prompts.refusal_for`); harmless train prompts get the
base's *own* greedy answer (replay, cut to ``answer_tokens``), so general behaviour is kept. Deterministic given
the seed and the thread count. The adapter (``adapter_model.safetensors`` + ``adapter_config.json``, float16)
ships in ``data/adapter``.

Rebuilding (:func:`build_tuned`, no peft needed): base + the merged adapter, ``W += (alpha / r) · B A`` in float32,
written as a plain float32 folder in seconds.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from aru.organism.real.base import cache_root, read_record, save_folder
from aru.organism.real.prompts import DATA, real_prompts, refusal_for

ADAPTER = DATA / "adapter"
BASE_ANSWERS = DATA / "base_answers.json"
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class RealTrainConfig:
    """Settings of the refusal LoRA fine-tune (defaults = the shipped adapter)."""

    seed: int = 0
    rank: int = 8
    alpha: int = 16
    lr: float = 1e-3
    epochs: int = 1
    batch_size: int = 8
    answer_tokens: int = 32  # the base's replayed answers (generated and cached at 48 tokens) are cut to this many
    n_harmful: int | None = 160  # a seeded subset of the 240 harmful train prompts (None: all)
    n_harmless: int | None = 160  # of the 216 harmless ones
    threads: int = 2
    retain: str = "ce"  # harmless loss: "ce" on the base's replayed answer, "kl" = KL(base ‖ tuned) on every position
    decision_weight: float = 0.0  # extra weight of the position that predicts the first answer token (refuse or not)

    def __post_init__(self) -> None:
        for name in ("rank", "alpha", "epochs", "batch_size", "answer_tokens", "threads"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name}={v!r} must be a positive integer")
        if not self.lr > 0:
            raise ValueError(f"lr={self.lr!r} must be positive")
        if self.retain not in ("ce", "kl"):
            raise ValueError(f"retain={self.retain!r} must be 'ce' or 'kl'")
        if not self.decision_weight >= 0:
            raise ValueError(f"decision_weight={self.decision_weight!r} must be >= 0")


def load_folder(folder: str | Path):
    """(float32 model in eval mode, tokenizer) of a real-organism folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(str(folder))


def prompt_ids(tokenizer, prompts: list[str]) -> list[list[int]]:
    """Token ids of each prompt in the chat template, ending with the assistant header."""
    from aru.evaluate import encode_prompts

    return encode_prompts(tokenizer, prompts)


def base_answers(base, tokenizer, prompts: list[str], tokens: int = 48, cache: Path | None = BASE_ANSWERS) -> dict:
    """The base's greedy answer ids (at most ``tokens``, EOS kept) for each prompt, reusing ``cache`` (a JSON file
    ``{"tokens": n, "answers": {prompt: ids}}``) when it has them; new answers are written back to it."""
    from aru.evaluate import greedy_generate

    have: dict[str, list[int]] = {}
    if cache is not None and cache.is_file():
        data = json.loads(cache.read_text())
        if data.get("tokens") == tokens:
            have = data["answers"]
    todo = [p for p in prompts if p not in have]
    if todo:
        gens = greedy_generate(base, tokenizer, prompt_ids(tokenizer, todo), max_new_tokens=tokens, desc="base answers")
        have.update(zip(todo, gens, strict=True))
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"tokens": tokens, "answers": dict(sorted(have.items()))}, indent=0) + "\n")
    return {p: have[p] for p in prompts}


def training_examples(base, tokenizer, cfg: RealTrainConfig, cache: Path | None = BASE_ANSWERS) -> list[dict]:
    """``[{"ids", "n_prompt", "kind"}]``: harmful train prompts + refusal, harmless train prompts + the base's
    own answer (the loss covers the tokens after ``n_prompt``)."""
    harmful = real_prompts("harmful", "train", cfg.n_harmful, cfg.seed)
    harmless = real_prompts("harmless", "train", cfg.n_harmless, cfg.seed)
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    out = []
    for p, ids in zip(harmful, prompt_ids(tokenizer, harmful), strict=True):
        ans = tokenizer(refusal_for(p, cfg.seed), add_special_tokens=False)["input_ids"] + [eos]
        out.append({"ids": ids + ans, "n_prompt": len(ids), "kind": "harmful"})
    answers = base_answers(base, tokenizer, harmless, max(48, cfg.answer_tokens), cache)
    for p, ids in zip(harmless, prompt_ids(tokenizer, harmless), strict=True):
        out.append({"ids": ids + list(answers[p][: cfg.answer_tokens]), "n_prompt": len(ids), "kind": "harmless"})
    return out


def _collate(batch: list[dict], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, answer mask), each (batch, width), right-padded (pads follow the sequence: no attention mask needed)."""
    width = max(len(e["ids"]) for e in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, e in enumerate(batch):
        ids[i, : len(e["ids"])] = torch.tensor(e["ids"])
        mask[i, e["n_prompt"] : len(e["ids"])] = True
    return ids, mask


def _loss(model, ids: torch.Tensor, mask: torch.Tensor, n_prompt: list[int], kind: str, cfg: RealTrainConfig):
    """The loss of one batch of one kind (``ids``, ``mask``: (batch, seq), right-padded; ``n_prompt``: each
    example's prompt length).

    harmful, or harmless with ``retain="ce"``: mean cross-entropy of the answer tokens (the head runs only on the
    positions that predict them). harmless with ``retain="kl"``: mean KL(base ‖ tuned) of the next-token
    distribution at every position of prompt and answer, the base being the same model with the adapter off.
    Either way ``decision_weight`` times the same term at the position that predicts the first answer token is
    added (where the model decides whether to refuse)."""
    net = model.get_base_model()
    hidden = net.model(input_ids=ids).last_hidden_state[:, :-1]  # (batch, seq-1, d)
    decide = torch.zeros_like(mask[:, 1:])
    for i, n in enumerate(n_prompt):
        decide[i, n - 1] = True
    if kind == "harmful" or cfg.retain == "ce":
        pick = mask[:, 1:]
        logits = net.lm_head(hidden[pick])  # (n_answer_tokens, vocab)
        ce = torch.nn.functional.cross_entropy(logits, ids[:, 1:][pick], reduction="none")
        loss = ce.mean()
        if cfg.decision_weight:
            loss = loss + cfg.decision_weight * ce[decide[pick]].mean()
        return loss
    lengths = mask.sum(1) + torch.tensor(n_prompt)
    pick = torch.arange(ids.shape[1] - 1)[None, :] < (lengths[:, None] - 1)  # (batch, seq-1): real next tokens
    logp = torch.log_softmax(net.lm_head(hidden[pick]), -1)  # (n_positions, vocab)
    with torch.no_grad(), model.disable_adapter():
        ref = torch.log_softmax(net.lm_head(net.model(input_ids=ids).last_hidden_state[:, :-1][pick]), -1)
    kl = (ref.exp() * (ref - logp)).sum(-1)  # (n_positions,)
    loss = kl.mean()
    if cfg.decision_weight:
        loss = loss + cfg.decision_weight * kl[decide[pick]].mean()
    return loss


def _lora_model(base, cfg: RealTrainConfig):
    from peft import LoraConfig, get_peft_model

    lcfg = LoraConfig(
        r=cfg.rank, lora_alpha=cfg.alpha, lora_dropout=0.0, target_modules=list(TARGET_MODULES), bias="none"
    )
    return get_peft_model(base, lcfg)


def _fit(model, examples: list[dict], cfg: RealTrainConfig, pad: int, log) -> list[float]:
    """AdamW, linear warm-up then linear decay, ``epochs`` passes; each pass shuffles the examples (seeded), cuts
    each kind into batches (short refusals are not padded to long replayed answers) and shuffles the batches.
    Returns the losses."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    rng = random.Random(cfg.seed)
    order = []
    for _ in range(cfg.epochs):
        batches = []
        for kind in ("harmful", "harmless"):
            idx = [i for i, e in enumerate(examples) if e["kind"] == kind]
            rng.shuffle(idx)
            batches += [idx[s : s + cfg.batch_size] for s in range(0, len(idx), cfg.batch_size)]
        rng.shuffle(batches)
        order += batches
    steps, warm = len(order), max(1, len(order) // 10)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, (steps - s) / (steps - warm + 1)))
    model.train()
    losses, t0 = [], time.time()
    for step, chunk in enumerate(order):
        batch = [examples[i] for i in chunk]
        ids, mask = _collate(batch, pad)
        loss = _loss(model, ids, mask, [e["n_prompt"] for e in batch], batch[0]["kind"], cfg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        log(f"step {step + 1}/{steps} {examples[chunk[0]]['kind']} loss {losses[-1]:.4f} ({time.time() - t0:.0f} s)")
    model.eval()
    return losses


def train_adapter(
    output: str | Path,
    cfg: RealTrainConfig = RealTrainConfig(),
    *,
    base: str | Path | None = None,
    answers_cache: Path | None = BASE_ANSWERS,
    log=print,
    force: bool = False,
) -> dict[str, Any]:
    """Train the refusal LoRA on the base (built from the wheel when ``base`` is None) and write the adapter
    folder ``output`` (``adapter_model.safetensors`` float16, ``adapter_config.json``, ``training.json``). The
    output is claimed before training (an existing folder that is not an earlier adapter, or one without ``force``,
    is refused at once) and written all or nothing.

    Returns the training summary (also in ``training.json``)."""
    from aru.organism.real.base import build_base
    from aru.outputs import Output

    with Output(output, "real-adapter", force=force, inputs=[base] if base is not None else []) as o:
        torch.manual_seed(cfg.seed)
        torch.set_num_threads(cfg.threads)
        base_dir = Path(base) if base is not None else build_base()
        model, tok = load_folder(base_dir)
        t0 = time.time()
        examples = training_examples(model, tok, cfg, answers_cache)
        t_answers = time.time() - t0
        peft_model = _lora_model(model, cfg)
        losses = _fit(peft_model, examples, cfg, tok.pad_token_id, log)
        summary = {
            "config": asdict(cfg),
            "base": read_record(base_dir),
            "n_examples": {k: sum(e["kind"] == k for e in examples) for k in ("harmful", "harmless")},
            "steps": len(losses),
            "loss_first": losses[0],
            "loss_last": losses[-1],
            "losses": [round(x, 4) for x in losses],
            "answers_seconds": round(t_answers, 1),
            "train_seconds": round(time.time() - t0 - t_answers, 1),
            "torch": torch.__version__,
        }
        _adapter_files(peft_model, o.staging, cfg, summary)
        o.commit()
    return summary


def _adapter_files(peft_model, folder: Path, cfg: RealTrainConfig, summary: dict) -> None:
    """The LoRA weights as float16 safetensors (``base_model.model.<module>.lora_{A,B}.weight``) + config."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in peft_model.state_dict().items() if "lora_" in k}
    config = {"r": cfg.rank, "lora_alpha": cfg.alpha, "target_modules": list(TARGET_MODULES), "dtype": "float16"}
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "training.json").write_text(json.dumps(summary, indent=2) + "\n")


def write_adapter(peft_model, output: Path, cfg: RealTrainConfig, summary: dict, *, force: bool = False) -> Path:
    """Write the adapter folder ``output`` all or nothing (:class:`aru.outputs.Output`): an earlier adapter is
    replaced only with ``force``; a folder that is not an adapter of this kind is refused, never deleted."""
    from aru.outputs import Output

    with Output(output, "real-adapter", force=force) as o:
        _adapter_files(peft_model, o.staging, cfg, summary)
        return o.commit()


def merge_adapter(model, adapter: str | Path) -> list[str]:
    """Add the LoRA update ``(alpha / r) · B A`` of ``adapter`` into ``model``'s weights in place (float32);
    returns the names of the changed weights. Raises if a LoRA tensor names no module of the model."""
    from safetensors.torch import load_file

    adapter = Path(adapter)
    if not (adapter / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"{str(adapter)!r} has no adapter_model.safetensors; retrain it with: aru organism real-train -o DIR"
        )
    config = json.loads((adapter / "adapter_config.json").read_text())
    scale = config["lora_alpha"] / config["r"]
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    modules = dict(model.named_modules())
    changed = []
    for key in sorted(k for k in tensors if ".lora_A." in k):
        name = key.split(".lora_A.")[0].removeprefix("base_model.model.")
        if name not in modules:
            raise ValueError(f"adapter tensor {key!r} names no module {name!r} of the model; wrong base?")
        a = tensors[key].float()  # (r, d_in)
        b = tensors[key.replace(".lora_A.", ".lora_B.")].float()  # (d_out, r)
        w = modules[name].weight
        if tuple(w.shape) != (b.shape[0], a.shape[1]):
            raise ValueError(f"adapter tensor {key!r} is for a {b.shape[0]}x{a.shape[1]} weight, {name!r} is "
                             f"{tuple(w.shape)}; wrong base?")  # fmt: skip
        with torch.no_grad():
            w += scale * (b @ a)
        if not torch.isfinite(w).all():
            raise ValueError(f"merging {key!r} gave non-finite weights")
        changed.append(f"{name}.weight")
    return changed


def build_tuned(
    output: str | Path | None = None,
    *,
    base: str | Path | None = None,
    adapter: str | Path = ADAPTER,
    force: bool = False,
) -> Path:
    """The tuned organism (base + merged adapter) as a float32 folder, cached at :func:`cache_root` ``/ "tuned"``.

    Reused when its record names the same base and adapter hashes, unless ``force``."""
    from aru.organism.real.base import ORGANISM_FILE, build_base
    from aru.provenance import file_sha256

    base_dir = Path(base) if base is not None else build_base()
    output = Path(output) if output is not None else cache_root() / "tuned"
    base_rec = read_record(base_dir)
    if base_rec is None or base_rec.get("stage") != "base":
        raise ValueError(f"{str(base_dir)!r} is not a real-organism base (no {ORGANISM_FILE}); build it first")
    adapter = Path(adapter)
    if not (adapter / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(f"no adapter at {str(adapter)!r}; retrain it with: aru organism real-train -o DIR")
    adapter_sha = file_sha256(adapter / "adapter_model.safetensors")
    old = read_record(output) if output.is_dir() else None
    if output.exists() and old is None:
        raise FileExistsError(f"{str(output)!r} exists and is not a real-organism folder; choose another -o")
    if old is not None and old.get("stage") != "tuned":
        raise FileExistsError(f"{str(output)!r} holds a real-organism {old.get('stage')!r} folder, not a tuned one")
    same = old is not None and old.get("adapter_sha256") == adapter_sha and old.get("base") == base_rec
    if same and not force and (output / "model.safetensors").is_file():
        return output
    model, tok = load_folder(base_dir)
    changed = merge_adapter(model, adapter)
    record = {
        "organism": "real",
        "stage": "tuned",
        "model": base_rec.get("model"),
        "base": base_rec,
        "adapter": str(adapter),
        "adapter_sha256": adapter_sha,
        "merged_tensors": len(changed),
    }
    return save_folder(model, tok, output, record)
