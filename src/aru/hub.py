"""Publishing an edited checkpoint: the model card and ``push`` to the Hugging Face Hub.

The card is built from the folder's ``aru.json`` (see :mod:`aru.provenance`): what was removed and how,
the run's evaluation table, the ``aru verify`` numbers, how to reproduce it and its limitations. Whatever
the record lacks is said to be absent rather than left out silently.

``push`` refuses a folder whose files do not match ``aru.json`` (a tampered or partial output), then calls
``create_repo(exist_ok=True)`` and uploads the folder in one commit. The card is written into the folder as
``README.md`` just before the upload: ``README.md`` is excluded from the provenance hashes for that reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from aru.errors import AruError
from aru.provenance import PROVENANCE_FILE, check_provenance, read_provenance

#: folders above this many bytes go through ``HfApi.upload_large_folder`` when the client has it
LARGE_FOLDER_BYTES = 50 * 2**30
CARD_FILE = "README.md"
TAGS = ["aru", "unlearning", "abliteration"]


@dataclass
class PushResult:
    repo_id: str
    files: list[tuple[str, int]]  # (path in repo, size in bytes), README.md included
    card: str
    dry_run: bool
    private: bool = False
    revision: str | None = None
    commit_url: str | None = None
    method: str = "upload_folder"  # or "upload_large_folder"
    total_bytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.total_bytes = sum(size for _, size in self.files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "repo_id": self.repo_id,
            "dry_run": self.dry_run,
            "private": self.private,
            "revision": self.revision,
            "method": self.method,
            "commit_url": self.commit_url,
            "total_bytes": self.total_bytes,
            "files": [{"path": p, "size": s} for p, s in self.files],
            "card": self.card,
        }


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_fmt(v) for v in value)
    return "" if value is None else str(value)


def _table(rows: list[dict[str, Any]]) -> str:
    cols: list[str] = []
    for row in rows:
        cols += [c for c in row if c not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(row.get(c)) for c in cols) + " |" for row in rows]
    return "\n".join(lines)


def _base_model(record: dict[str, Any]) -> str | None:
    inp = record.get("input") or {}
    return inp.get("repo_id") or None


def build_model_card(folder: str | Path, *, repo_id: str | None = None) -> ModelCard:
    """The model card of the aru output ``folder``, from its ``aru.json``; :class:`ProvenanceError` if it has none."""
    folder = Path(folder)
    record = read_provenance(folder)
    extra = record.get("extra") or {}
    settings = record.get("settings") or {}
    directions = record.get("directions") or {}
    dmeta = directions.get("metadata") or {}
    base = _base_model(record)
    arch = None
    if (folder / "config.json").is_file():
        arch = json.loads((folder / "config.json").read_text()).get("model_type")
    adapter = settings.get("format") == "peft"
    arch = arch or settings.get("model_type")

    card_meta = {"base_model_relation": "adapter"} if adapter and base else {}
    data = ModelCardData(
        base_model=base,
        tags=TAGS + ([arch] if arch else []) + (["lora"] if adapter else []),
        library_name="peft" if adapter else "transformers",
        pipeline_tag="text-generation",
        **card_meta,
    )
    title = repo_id or folder.name
    out = [f"# {title}", ""]
    src = base or (record.get("input") or {}).get("path") or "an unnamed checkpoint"
    if adapter:
        out += _adapter_section(src, settings, repo_id or str(folder))
    what = "Base + this adapter is" if adapter else "This model is"
    out += [
        f"{what} `{src}` with one behaviour removed by [aru](https://github.com/aru-project/aru) "
        "(automatic reinforcement unlearning): a few residual-stream directions are projected out of every "
        "weight that writes into the residual stream (P = I − QᵀQ). No fine-tuning; the architecture, "
        "tokenizer and tensor names are unchanged.",
        "",
        "## What was removed and how",
        "",
    ]
    selection = extra.get("selection") or {}
    facts = {
        "behaviour": dmeta.get("behaviour") or dmeta.get("behavior") or selection.get("behaviour"),
        "method": selection.get("method") or dmeta.get("method") or settings.get("method"),
        "fitted at layer": selection.get("layer"),
        "edited layers": selection.get("edit") or settings.get("layers") or "all",
        "k (directions)": selection.get("k", dmeta.get("k")),
        "strength": selection.get("strength", settings.get("strength")),
        "edited tensors": len(record.get("edited_tensors") or []) or None,
    }
    facts.update({f"setting: {k}": v for k, v in settings.items() if k not in {"layers", "strength", "method"}})
    out += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in facts.items() if v not in (None, "")]
    candidates = selection.get("candidates")
    if isinstance(candidates, list) and candidates and all(isinstance(r, dict) for r in candidates):
        out += ["", "Candidates considered by the selection:", "", _table(candidates)]
    out += ["", "## Evaluation", ""]
    evaluation = extra.get("evaluation")
    if isinstance(evaluation, list) and evaluation and all(isinstance(r, dict) for r in evaluation):
        out += [_table(evaluation)]
    else:
        out += ["No evaluation was recorded for this output (run `aru eval` or `aru run` to produce one)."]
    out += ["", "## Exactness", ""]
    verify = extra.get("verify")
    if isinstance(verify, dict) and verify:
        out += ["`aru verify`: the edited weights against the original model with the projection applied as hooks.", ""]
        out += ["| | |", "|---|---|"] + [f"| {k} | {_fmt(v)} |" for k, v in verify.items()]
    else:
        out += ["No `aru verify` result was recorded for this output (run `aru verify` to check the fold)."]
    out += ["", "## Reproduction", ""]
    out += [f"- aru version: `{record.get('aru_version')}`", f"- created: {record.get('created')}"]
    inp = record.get("input") or {}
    if inp.get("revision"):
        out += [f"- base revision: `{inp['revision']}`"]
    if directions.get("sha256"):
        out += [f"- directions file sha256: `{directions['sha256']}`"]
    else:
        out += ["- directions file hash: absent from aru.json"]
    out += [f"- every file's sha256 is in `{PROVENANCE_FILE}`; `aru push` checks them before publishing"]
    recipe = extra.get("recipe")
    if recipe:
        out += ["", "Recipe:", "", "```toml", str(recipe).rstrip(), "```"]
    else:
        out += ["- recipe: absent (this output was not produced by `aru run`)"]
    out += ["", "## Limitations", ""]
    approx = settings.get("approximate") or settings.get("exact") is False
    if isinstance(verify, dict) and verify.get("exact") is False:
        approx = True
    if approx:
        out += [
            "- **Approximate fold.** This architecture normalises a block's output before it reaches the residual "
            "stream (post-norms / sandwich norms), so folding the projection into the weights is only approximate; "
            "see the exactness numbers above."
        ]
    else:
        out += [
            "- Families with post-norms (e.g. Gemma 2/3) are folded only approximately; this output is not flagged so."
        ]
    if settings.get("untied"):
        out += ["- The input embedding was edited, so it was untied from the output head (the checkpoint is larger)."]
    elif settings.get("keep_tied") and any("keep_tied" in str(a) for a in settings.get("approximate") or []):
        out += ["- Tied embeddings were kept tied: the edit also projects the output head (approximate)."]
    elif "untied" not in settings:
        out += ["- Untied embeddings: whether the embedding was untied from the head is not recorded."]
    out += [
        "- Removing directions suppresses a behaviour; it does not remove knowledge, and can change unrelated "
        "behaviour. Check the evaluation table before relying on it.",
        "",
    ]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(out))


def _adapter_section(base: str, settings: dict[str, Any], name: str) -> list[str]:
    """The card's opening for a PEFT adapter (aru edit --format peft): what it is and how to load it."""
    lines = [
        f"**This is a LoRA adapter for `{base}`, not a full model.** It is the exact edit described below, "
        f"written as a rank-{settings.get('rank')} LoRA (lora_alpha = r, so the scaling is 1): base + adapter "
        "equals the edited checkpoint.",
        "",
        "```python",
        "from peft import PeftModel",
        "from transformers import AutoModelForCausalLM",
        "",
        f'model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained("{base}"), "{name}")',
        "```",
        "",
        f"Serve it with vLLM: `vllm serve {base} --enable-lora --lora-modules unlearned={name}`.",
        "",
    ]
    if settings.get("untied"):
        lines += [
            "The base model ties its input embedding and output head. The adapter edits the input embedding only "
            "and leaves the head as it is, like the untied edited checkpoint. Before `merge_and_unload`, untie "
            "the base (load it with `tie_word_embeddings=False` and copy the embedding into `lm_head`); otherwise "
            "the merge also changes the head.",
            "",
        ]
    return lines


def resolve_token(token: str | None = None) -> str:
    """``token``, else ``HF_TOKEN``, else the stored login; :class:`AruError` when there is none."""
    if token:
        return token
    if os.environ.get("HF_TOKEN"):
        return os.environ["HF_TOKEN"]
    from huggingface_hub import get_token

    stored = get_token()
    if stored:
        return stored
    raise AruError("No Hugging Face token: pass --token hf_..., set HF_TOKEN, or log in with: hf auth login")


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid ``owner/name``; ValueError naming it otherwise (no network)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise ValueError(
            f"Malformed repo id {repo_id!r}: {str(exc).rstrip('.')}. Use the form owner/name, e.g. you/model-unlearned"
        ) from exc
    if repo_id.count("/") != 1:
        raise ValueError(f"Malformed repo id {repo_id!r}: use the form owner/name, e.g. you/model-unlearned")
    return repo_id


def _files(folder: Path) -> list[tuple[str, int]]:
    return [
        (p.relative_to(folder).as_posix(), p.stat().st_size)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(folder).parts and ".git" not in p.relative_to(folder).parts
    ]


def push(
    folder: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    dry_run: bool = False,
    token: str | None = None,
    endpoint: str | None = None,
    large_folder_threshold: int = LARGE_FOLDER_BYTES,
) -> PushResult:
    """Check ``folder``'s provenance, build its card and push it to ``repo_id`` in one commit.

    ``dry_run`` lists the files and sizes and returns the card without network or token. Otherwise the card is
    written as ``folder/README.md`` (unhashed in aru.json, so the provenance still holds), the repo is created with
    ``exist_ok=True`` and the folder uploaded with ``upload_folder`` (``upload_large_folder`` above
    ``large_folder_threshold`` bytes, when the installed huggingface_hub has it).
    """
    folder = Path(folder)
    check_repo_id(repo_id)
    if not folder.is_dir():
        raise FileNotFoundError(f"{str(folder)!r} is not a folder. Create an output with: aru edit MODEL ... -o OUT")
    record = check_provenance(folder)
    card = build_model_card(folder, repo_id=repo_id)
    text = str(card)
    files = [(p, s) for p, s in _files(folder) if p != CARD_FILE] + [(CARD_FILE, len(text.encode()))]
    files.sort()
    size = sum(s for _, s in files)
    from huggingface_hub import HfApi

    large = size > large_folder_threshold and hasattr(HfApi, "upload_large_folder")
    result = PushResult(
        repo_id=repo_id,
        files=files,
        card=text,
        dry_run=dry_run,
        private=private,
        revision=revision,
        method="upload_large_folder" if large else "upload_folder",
    )
    if dry_run:
        return result
    tok = resolve_token(token)
    api = HfApi(endpoint=endpoint, token=tok)
    message = commit_message or f"Upload {folder.name} edited with aru {record.get('aru_version')}"
    from huggingface_hub.errors import HfHubHTTPError

    try:
        card.save(folder / CARD_FILE)
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        ignore = [".cache/**", ".git/**"]
        if large:
            api.upload_large_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="model",
                revision=revision,
                private=private,
                ignore_patterns=ignore,
            )
            result.commit_url = f"{api.endpoint}/{repo_id}"
        else:
            info = api.upload_folder(
                repo_id=repo_id,
                folder_path=folder,
                repo_type="model",
                revision=revision,
                commit_message=message,
                ignore_patterns=ignore,
            )
            result.commit_url = str(getattr(info, "commit_url", info))
    except HfHubHTTPError as exc:
        first = str(exc).strip().splitlines()[0]
        raise AruError(
            f"The Hub refused the push of {str(folder)!r} to {repo_id!r}: {first}. "
            "Check the token's write access to that namespace (hf auth whoami) and the repo id."
        ) from exc
    return result
