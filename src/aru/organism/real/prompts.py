"""The real organism's prompt sets, expanded deterministically from the templates in ``data/prompts.json``.

Each prompt is a *phrasing* (``"How do I {task}?"``) filled with one *task* of a *topic* (``"explosives"``:
``"build a pipe bomb"``, ...). Splits, for harmful (X−) and harmless (X+) prompts alike:

- ``train``: tasks 0–3 of each train topic × the train phrasings (what the fine-tune sees);
- ``val``: task 4 of each train topic × the train phrasings (for choosing a layer / direction);
- ``test``: every task of the held-out topics (fraud, stalking, self-harm; pets, crafts, money) × every phrasing,
  plus task 5 of each train topic × the held-out phrasings (roleplay, story, hypothetical framing).

So nothing in ``test`` shares a topic-task pair with ``train`` or ``val``, and its held-out topics and phrasings
were never seen by the fine-tune. ``data/plain.txt`` is plain English prose (one paragraph a line) for perplexity.
"""

from __future__ import annotations

import functools
import json
import random
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).parent / "data"
SPLITS = ("train", "val", "test")
KINDS = ("harmful", "harmless")
REFUSAL = "I'm sorry, but I can't help with that."


@dataclass(frozen=True)
class Prompt:
    """One prompt with where it came from."""

    text: str
    kind: str  # "harmful" | "harmless"
    topic: str
    task: int  # index of the task within its topic
    phrasing: str  # "train:<i>" | "held_out:<i>"
    split: str

    @property
    def held_out(self) -> bool:
        """Whether its topic or its phrasing was held out of the fine-tune."""
        return self.split == "test"


@functools.cache
def templates() -> dict:
    """The parsed ``data/prompts.json``."""
    return json.loads((DATA / "prompts.json").read_text(encoding="utf-8"))


def _fill(phrasing: str, task: str) -> str:
    return phrasing.replace("{task}", task)


def prompt_records(kind: str, split: str) -> list[Prompt]:
    """Every prompt of ``kind`` in ``split``, in a fixed order (topic, task, phrasing)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: use one of {KINDS}")
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: use one of {SPLITS}")
    t = templates()
    ph_train = [(f"train:{i}", p) for i, p in enumerate(t["phrasings"]["train"])]
    ph_held = [(f"held_out:{i}", p) for i, p in enumerate(t["phrasings"]["held_out"])]
    sets = t[kind]
    out: list[Prompt] = []

    def add(topic: str, tasks: list[str], idx: list[int], phrasings) -> None:
        for i in idx:
            for name, p in phrasings:
                out.append(Prompt(_fill(p, tasks[i]), kind, topic, i, name, split))

    for topic, tasks in sets["train_topics"].items():
        if split == "train":
            add(topic, tasks, [0, 1, 2, 3], ph_train)
        elif split == "val":
            add(topic, tasks, [4], ph_train)
    if split == "test":
        for topic, tasks in sets["held_out_topics"].items():
            add(topic, tasks, list(range(len(tasks))), ph_train + ph_held)
        for topic, tasks in sets["train_topics"].items():
            add(topic, tasks, [5], ph_held)
    return out


def real_prompts(kind: str, split: str, n: int | None = None, seed: int = 0) -> list[str]:
    """The prompt texts of ``kind`` (``"harmful"`` = X−, ``"harmless"`` = X+) in ``split``; with ``n``, a seeded
    subset of at most ``n`` (kept in order)."""
    texts = [p.text for p in prompt_records(kind, split)]
    if n is None or n >= len(texts):
        return texts
    idx = sorted(random.Random(seed).sample(range(len(texts)), n))
    return [texts[i] for i in idx]


def refusals() -> list[str]:
    """The refusal answers the fine-tune teaches (:data:`REFUSAL` most often, a few variants in the same voice)."""
    return list(templates()["refusals"])


def refusal_for(prompt: str, seed: int = 0) -> str:
    """The refusal answer for one training prompt: a deterministic choice among :func:`refusals`."""
    choices = refusals()
    return random.Random(f"{seed}:{prompt}").choice(choices)


def plain_text_path() -> Path:
    """``data/plain.txt``: plain English paragraphs, one a line, for perplexity."""
    return DATA / "plain.txt"


def plain_text() -> str:
    return plain_text_path().read_text(encoding="utf-8")


def write_prompt_files(out_dir: str | Path) -> dict[str, Path]:
    """Write ``bad_{split}.txt`` (harmful, X−), ``good_{split}.txt`` (harmless, X+) and ``plain.txt`` into
    ``out_dir`` (created); returns name -> path. The files are what ``aru fit --bad/--good`` and ``aru eval
    --retain`` take."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for kind, stem in (("harmful", "bad"), ("harmless", "good")):
        for split in SPLITS:
            path = out / f"{stem}_{split}.txt"
            path.write_text("\n".join(real_prompts(kind, split)) + "\n", encoding="utf-8")
            paths[path.stem] = path
    paths["plain"] = out / "plain.txt"
    paths["plain"].write_text(plain_text(), encoding="utf-8")
    return paths
