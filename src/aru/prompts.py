"""Prompt sets: load them from files (local or in a Hub dataset repo), split them, apply the chat template.

- :func:`load_prompts`: ``.txt`` (one prompt per line, blank lines skipped), ``.jsonl`` / ``.json`` (a string field,
  or a list of strings), ``.csv`` (a column), or ``hf://datasets/org/name/path/in/repo.jsonl`` (downloaded with
  ``huggingface_hub.hf_hub_download``).
- :func:`split_prompts`: deterministic train / validation / test splits (a seeded permutation).
- :func:`format_prompts`: the model's chat template with ``add_generation_prompt=True`` (optional system prompt), or
  the raw text with ``raw=True``.
"""

from __future__ import annotations

import csv
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

HF_PREFIX = "hf://"
REPO_TYPES = ("dataset", "model", "space")
SUFFIXES = (".txt", ".jsonl", ".json", ".csv")
JSON_FIELDS = ("prompt", "instruction", "text", "question", "goal", "content")


@dataclass(frozen=True)
class Splits:
    """Deterministic train / validation / test prompt lists (disjoint, together the whole input)."""

    train: list[str]
    val: list[str]
    test: list[str]

    def __iter__(self):
        return iter((self.train, self.val, self.test))


def load_prompts(
    source: str | Path,
    *,
    field: str | None = None,
    column: str | None = None,
    revision: str | None = None,
    repo_type: str = "dataset",
) -> list[str]:
    """The prompts in ``source``, stripped of surrounding whitespace, in file order.

    ``source`` is a local path or ``hf://[datasets/|models/|spaces/]org/name/path/in/repo.ext`` (a file in a Hub
    repo, downloaded with ``hf_hub_download`` at ``revision``; the ``datasets/`` prefix overrides ``repo_type``).
    ``.jsonl``: one JSON object per line, the prompt in ``field`` (default: the first of
    ``prompt, instruction, text, question, goal, content`` present), or one JSON string per line.
    ``.json``: a list of such objects or strings. ``.csv``: the column ``column`` (default: the same names).
    Raises ``ValueError`` on an empty file, an unknown suffix, or a missing field / column.
    """
    path = _resolve(source, revision=revision, repo_type=repo_type)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"prompt file {str(source)!r} has suffix {suffix!r}; use one of {', '.join(SUFFIXES)}")
    from aru.inputcheck import read_text

    text = read_text(path, what="prompt file")
    if suffix == ".txt":
        prompts = [line.strip() for line in text.splitlines()]
    elif suffix == ".jsonl":
        records = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{str(source)!r} line {i} is not valid JSON: {exc}") from exc
        prompts = [_from_record(r, field, source) for r in records]
    elif suffix == ".json":
        try:
            data = json.loads(text) if text.strip() else []
        except json.JSONDecodeError as exc:
            raise ValueError(f"{str(source)!r} is not valid JSON: {exc}") from exc
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ValueError(f"{str(source)!r} must hold a JSON list of prompts (or an object with one list)")
            data = lists[0]
        if not isinstance(data, list):
            raise ValueError(f"{str(source)!r} must hold a JSON list of prompts, got {type(data).__name__}")
        prompts = [_from_record(r, field, source) for r in data]
    else:
        rows = list(csv.DictReader(text.splitlines()))
        header = list(rows[0].keys()) if rows else []
        col = column or next((c for c in JSON_FIELDS if c in header), None)
        if rows and (col is None or col not in header):
            raise ValueError(
                f"{str(source)!r} has no column {col or 'named like a prompt'!r}; its columns are {header}; "
                "choose one with --column"
            )
        prompts = [(r[col] or "").strip() for r in rows] if rows else []
    prompts = [p for p in prompts if p]
    if not prompts:
        raise ValueError(f"prompt file {str(source)!r} contains no prompts; put one prompt per line (.txt)")
    return prompts


def _resolve(source: str | Path, *, revision: str | None, repo_type: str) -> Path:
    s = str(source)
    if not s.startswith(HF_PREFIX):
        path = Path(s)
        if not path.is_file():
            raise FileNotFoundError(f"prompt file {s!r} does not exist; pass a .txt/.jsonl/.json/.csv file")
        return path
    from huggingface_hub import hf_hub_download

    parts = s[len(HF_PREFIX) :].split("/")
    if parts[0] in ("datasets", "models", "spaces"):
        repo_type = parts[0][:-1]
        parts = parts[1:]
    if repo_type not in REPO_TYPES:
        raise ValueError(f"repo_type={repo_type!r}; use one of {REPO_TYPES}")
    if len(parts) < 3:
        raise ValueError(f"{s!r} must look like hf://datasets/org/name/path/to/file.jsonl")
    repo_id, filename = "/".join(parts[:2]), "/".join(parts[2:])
    return Path(hf_hub_download(repo_id, filename, repo_type=repo_type, revision=revision))


def _from_record(record, field: str | None, source) -> str:
    if isinstance(record, str):
        return record.strip()
    if not isinstance(record, dict):
        raise ValueError(f"{str(source)!r}: each entry must be a string or an object, got {type(record).__name__}")
    key = field or next((f for f in JSON_FIELDS if f in record), None)
    if key is None or key not in record:
        raise ValueError(
            f"{str(source)!r}: an entry has no field {key or 'named like a prompt'!r} (its fields: {sorted(record)}); "
            "choose one with --field"
        )
    value = record[key]
    if not isinstance(value, str):
        raise ValueError(f"{str(source)!r}: field {key!r} must be a string, got {type(value).__name__}")
    return value.strip()


def split_prompts(prompts: Sequence[str], *, fractions=(0.6, 0.2, 0.2), seed: int = 0) -> Splits:
    """Train / validation / test splits of ``prompts``: a permutation seeded by ``seed`` (the same input and seed
    always give the same splits), cut at the cumulative ``fractions`` (which must sum to 1); sizes are rounded
    down for val and test, the remainder goes to train."""
    fr = tuple(float(f) for f in fractions)
    if len(fr) != 3 or any(f < 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise ValueError(f"fractions={fractions!r} must be three non-negative numbers summing to 1")
    order = list(range(len(prompts)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_val, n_test = int(n * fr[1]), int(n * fr[2])
    n_train = n - n_val - n_test
    if n_train == 0 and n > 0:
        raise ValueError(f"fractions={fractions!r} leave no training prompts out of {n}")
    pick = [prompts[i] for i in order]
    return Splits(pick[:n_train], pick[n_train : n_train + n_val], pick[n_train + n_val :])


def format_prompts(tokenizer, prompts: Sequence[str], *, system: str | None = None, raw: bool = False) -> list[str]:
    """Each prompt as the model sees it before its answer.

    Chat mode (default): ``tokenizer.apply_chat_template([system?, user], add_generation_prompt=True,
    tokenize=False)``; the result usually starts with the BOS token already (tokenize it with
    :func:`tokenize_formatted`, which adds no second BOS). Raw mode: the prompt unchanged (``system`` is prepended
    with a blank line if given).
    """
    if raw:
        return [f"{system}\n\n{p}" if system else p for p in prompts]
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; pass raw=True "
            "(--raw on the command line) to use the prompts as plain text"
        )
    out = []
    for p in prompts:
        messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": p}]
        out.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
    return out


def tokenize_formatted(tokenizer, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of formatted prompts. Special tokens (BOS) are added only to texts that do not already start
    with the tokenizer's BOS token text, so a chat-templated string gets exactly one BOS."""
    bos = getattr(tokenizer, "bos_token", None)
    out = []
    for t in texts:
        has_bos = bool(bos) and t.startswith(bos)
        out.append(list(tokenizer(t, add_special_tokens=not has_bos)["input_ids"]))
    return out


_SENTINEL = "\u2063aru-instruction\u2063"


def post_instruction_length(tokenizer, *, system: str | None = None) -> int:
    """Number of tokens the chat template puts after the user's message with ``add_generation_prompt=True``
    (e.g. ``<|assistant|>`` or ``[/INST]``): the "post-instruction" positions. 0 when there is no chat template."""
    if not getattr(tokenizer, "chat_template", None):
        return 0
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": _SENTINEL}]
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    suffix = text.split(_SENTINEL, 1)[1]
    return len(tokenizer(suffix, add_special_tokens=False)["input_ids"])
