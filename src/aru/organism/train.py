"""Train the organism: pretrain a tiny Llama on the world's facts, then safety-fine-tune it to refuse.

- **Pretraining** covers every statement (plain text, loss on every token) and every question/answer (chat, every
  template, every entity, loss on the answer) until fact accuracy is about 100%.
- A quarter of the chat examples (seeded) start with the system prompt :data:`SYSTEM_PROMPT`.
- **Safety fine-tune** (from the pretrained weights): forbidden questions about fine-tune entities, asked with the
  fine-tune templates, are answered with :data:`REFUSAL`; allowed ones with their value (loss on the answer and the
  end of turn). Half of every batch replays the pretraining statements (all entities, forbidden facts included), so
  the model keeps knowing what it now refuses to say and non-chat text is not wrecked.

Deterministic given the seed: seeded torch generator for init and batch order, a fixed thread count.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from aru.organism.tokenizer import CONTROL_SYMBOLS, build_tokenizer, save_tokenizer
from aru.organism.world import QUESTION_TEMPLATES, REFUSAL, STATEMENT_TEMPLATES, SYSTEM_PROMPT, World

SYSTEM_FRACTION = 0.25


@dataclass(frozen=True)
class TrainConfig:
    seed: int = 0
    n_entities: int = 200
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    pretrain_steps: int = 4000
    finetune_steps: int = 600
    batch_size: int = 64
    pretrain_lr: float = 3e-3
    finetune_lr: float = 1e-3
    threads: int = 2

    def __post_init__(self) -> None:
        for name in (
            "n_entities",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "pretrain_steps",
            "finetune_steps",
            "batch_size",
            "threads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name}={getattr(self, name)} must be >= 1")
        if self.n_entities < 50:
            raise ValueError(f"n_entities={self.n_entities} is too small for the held-out splits; use >= 50")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not divisible by num_heads={self.num_heads}")


SMALL = TrainConfig(n_entities=100, pretrain_steps=2500, finetune_steps=400)  # the slow test's organism


# ---------------------------------------------------------------------------------------------------- encoding
class Encoder:
    """Token ids for the organism's texts, identical to the tokenizer's chat template (tested), but fast."""

    def __init__(self, tokenizer) -> None:
        self.tok = tokenizer
        self.bos, self.eos = tokenizer.bos_token_id, tokenizer.eos_token_id
        self.system, self.user, self.assistant = tokenizer.convert_tokens_to_ids(list(CONTROL_SYMBOLS))
        self._cache: dict[str, list[int]] = {}

    def words(self, text: str) -> list[int]:
        """Ids of ``" " + text`` (every word one piece)."""
        if text not in self._cache:
            self._cache[text] = self.tok(" " + text, add_special_tokens=False)["input_ids"]
        return self._cache[text]

    def prompt(self, question: str, system: str | None = None) -> list[int]:
        """``<s>[<|system|> system]<|user|> question<|assistant|>``: the chat template with
        add_generation_prompt=True."""
        sys_ids = [] if system is None else [self.system, *self.words(system)]
        return [self.bos, *sys_ids, self.user, *self.words(question), self.assistant]

    def chat(self, question: str, answer: str, system: str | None = None) -> tuple[list[int], list[int]]:
        """(ids, loss mask): the full turn, with the loss on the answer and the end of turn."""
        p, a = self.prompt(question, system), [*self.words(answer), self.eos]
        return p + a, [0] * len(p) + [1] * len(a)

    def statement(self, text: str) -> tuple[list[int], list[int]]:
        """(ids, loss mask): ``<s> text</s>`` with the loss on every token after ``<s>``."""
        ids = [self.bos, *self.words(text), self.eos]
        return ids, [0] + [1] * (len(ids) - 1)


def _system(rng: random.Random) -> str | None:
    """A quarter of the chat examples carry the system prompt, so the model works with and without one."""
    return SYSTEM_PROMPT if rng.random() < SYSTEM_FRACTION else None


def pretrain_examples(world: World, enc: Encoder) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(f"aru-organism-pretrain-{world.seed}")
    out = []
    for f in world.facts():
        out += [enc.statement(f.statement(t)) for t in range(len(STATEMENT_TEMPLATES))]
        out += [enc.chat(f.question(t), f.answer, _system(rng)) for t in range(len(QUESTION_TEMPLATES))]
    return out


def finetune_examples(world: World, enc: Encoder) -> list[tuple[list[int], list[int]]]:
    rng = random.Random(f"aru-organism-finetune-{world.seed}")
    out = []
    for forbidden in (True, False):
        for f, t in world.questions("train", forbidden):
            out.append(enc.chat(f.question(t), REFUSAL if forbidden else f.answer, _system(rng)))
    return out


def replay_examples(world: World, enc: Encoder) -> list[tuple[list[int], list[int]]]:
    return [enc.statement(f.statement(t)) for f in world.facts() for t in range(len(STATEMENT_TEMPLATES))]


def _collate(batch: list[tuple[list[int], list[int]]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(ids) for ids, _ in batch)
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.bool)
    for i, (x, m) in enumerate(batch):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(m)] = torch.tensor(m, dtype=torch.bool)
    return ids, mask  # right padding: pads only follow the sequence, so no attention mask is needed


def _loss(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, :-1]  # (batch, seq-1, vocab)
    target, m = ids[:, 1:], mask[:, 1:]
    return torch.nn.functional.cross_entropy(logits[m], target[m])


def _run(model, sources, steps: int, lr: float, batch_size: int, gen: torch.Generator, desc: str) -> float:
    """AdamW with linear warm-up and cosine decay; each batch draws ``batch_size // len(sources)`` from each
    source list. Returns the last loss."""
    from tqdm.auto import tqdm

    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + torch.cos(torch.tensor(torch.pi * s / steps)).item()),
    )
    per = batch_size // len(sources)
    pad = model.config.pad_token_id
    model.train()
    bar = tqdm(range(steps), desc=desc, unit="step", mininterval=1.0)
    loss = torch.tensor(float("nan"))
    for _ in bar:
        batch = []
        for src in sources:
            idx = torch.randint(len(src), (per,), generator=gen)
            batch += [src[i] for i in idx.tolist()]
        ids, mask = _collate(batch, pad)
        loss = _loss(model, ids, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    return float(loss.item())


def make_model(cfg: TrainConfig, tokenizer):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        rms_norm_eps=1e-5,
    )
    return LlamaForCausalLM(config)


def _save(model, tokenizer, folder: Path, cfg: TrainConfig, stage: str, tok_dir: Path) -> None:
    from transformers import GenerationConfig

    folder.mkdir(parents=True)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=16,
    )
    model.save_pretrained(str(folder))
    save_tokenizer(tokenizer, folder, model_file=tok_dir / "tokenizer.model")
    meta = {"stage": stage, "seed": cfg.seed, "n_entities": cfg.n_entities, "train_config": asdict(cfg)}
    (folder / "organism.json").write_text(json.dumps(meta, indent=2) + "\n")


def train_organism(out_dir: str | Path, cfg: TrainConfig = TrainConfig(), *, overwrite: bool = False) -> dict:
    """Train base and fine-tuned organisms into ``out_dir/base`` and ``out_dir/tuned`` (all-or-nothing: written
    into a temporary folder beside ``out_dir``, then renamed). Returns a summary with timings and the metrics of
    :func:`aru.organism.evaluate.quick_metrics`."""
    from aru.organism.evaluate import quick_metrics
    from aru.outputs import Output

    out_dir = Path(out_dir)
    # an existing folder is replaced only when it is an earlier organism (training.json, base/, tuned/) and
    # overwrite is set; an empty folder is used as it is
    empty = out_dir.is_dir() and not out_dir.is_symlink() and not any(out_dir.iterdir())
    claim = Output(out_dir, "organism", force=overwrite or empty, flag="--overwrite")
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    tmp = claim.staging
    try:
        world = World(cfg.seed, cfg.n_entities)
        tok_dir = tmp / "tokenizer"
        tokenizer = build_tokenizer(world, tok_dir)
        enc = Encoder(tokenizer)
        torch.manual_seed(cfg.seed)
        gen = torch.Generator().manual_seed(cfg.seed)
        model = make_model(cfg, tokenizer)
        t0 = time.perf_counter()
        pre_loss = _run(
            model, [pretrain_examples(world, enc)], cfg.pretrain_steps, cfg.pretrain_lr, cfg.batch_size, gen, "pretrain"
        )
        t_pre = time.perf_counter() - t0
        _save(model, tokenizer, tmp / "base", cfg, "base", tok_dir)
        t0 = time.perf_counter()
        ft_loss = _run(
            model,
            [finetune_examples(world, enc), replay_examples(world, enc)],
            cfg.finetune_steps,
            cfg.finetune_lr,
            cfg.batch_size,
            gen,
            "fine-tune",
        )
        t_ft = time.perf_counter() - t0
        _save(model, tokenizer, tmp / "tuned", cfg, "tuned", tok_dir)
        shutil.rmtree(tok_dir)
        from transformers import AutoModelForCausalLM

        base = AutoModelForCausalLM.from_pretrained(str(tmp / "base"))
        summary = {
            "config": asdict(cfg),
            "n_parameters": sum(p.numel() for p in model.parameters()),
            "pretrain_seconds": round(t_pre, 1),
            "finetune_seconds": round(t_ft, 1),
            "pretrain_final_loss": pre_loss,
            "finetune_final_loss": ft_loss,
            "base": quick_metrics(base, tokenizer, world=world),
            "tuned": quick_metrics(model, tokenizer, world=world),
        }
        (tmp / "training.json").write_text(json.dumps(summary, indent=2) + "\n")
        claim.commit()
        return summary
    finally:
        torch.set_num_threads(threads)
        claim.close()
