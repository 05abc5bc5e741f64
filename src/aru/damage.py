"""The damage guard: a cheap estimate of what an edit does to the model, before any checkpoint is written.

The edit P = I − λ QᵀQ folded into the writers is exactly the original model with projection hooks on the
writers' outputs (:func:`aru.model_edit.projection_hooks`; ``aru verify`` checks it), so the damage can be
measured on the loaded original without writing anything:

- ``kl``: mean over a few X+ prompts (the ones the model should keep answering) of KL(original ‖ edited) of the
  first answer token (nats);
- ``ppl_base`` / ``ppl_edit``: perplexity on plain text (the caller's text, or :data:`DEFAULT_TEXT`, a few
  English paragraphs, when the tokenizer can encode it without unknown tokens).

An edit is *damaging* when ``kl > max_kl`` or ``ppl_edit / ppl_base > max_ppl_ratio`` (:class:`Thresholds`;
defaults 0.5 nats and 1.10). ``aru fit`` uses :func:`choose_safe_layer` so its default layer is the best held-out
separation among the layers whose edit is not damaging; ``aru fit`` and ``aru edit`` refuse to write a damaging
edit (:class:`DamageError`, naming the damage and what to try instead) unless ``--force-damage`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from aru.errors import AruError

# A few paragraphs of ordinary English prose (written for aru): the default text for the perplexity check.
DEFAULT_TEXT = """\
The river rose slowly through the night, and by morning the low fields near the village were under a thin sheet \
of brown water. Farmers walked along the embankment in silence, counting the fence posts that still showed above \
the surface. By noon the rain had stopped and the first boats came out to look for stranded sheep.
In the spring of that year the town council voted to rebuild the old library. The building had stood on the \
corner of the market square for more than a century, and many people remembered reading there as children. The \
work took two years, and the new reading room was larger, brighter and warmer than the old one.
Photosynthesis is the process by which green plants use sunlight to turn water and carbon dioxide into sugar and \
oxygen. It takes place mainly in the leaves, inside small structures called chloroplasts, which contain the green \
pigment chlorophyll. Without it there would be almost no oxygen in the air we breathe.
Water boils at one hundred degrees Celsius at sea level, but at higher altitudes the air pressure is lower and it \
boils at a lower temperature. This is why cooking pasta in the mountains takes longer than it does at the coast.
She opened the letter carefully, as if it might break. Inside was a single sheet of paper covered in her \
grandmother's small, neat handwriting, and a pressed flower that had turned the colour of tea. She read it twice, \
then folded it again and put it back in the drawer.
"""


# Ordinary requests (written for aru): the X+ prompts of aru edit's check when neither --good nor the file has any.
DEFAULT_PROMPTS = (
    "How do I bake a loaf of bread?",
    "Give me three tips for a job interview.",
    "Write a short poem about autumn.",
    "What is the capital of France?",
    "Explain how a rainbow forms.",
    "How can I improve my sleep?",
    "Suggest a name for a pet cat.",
    "What are the health benefits of walking?",
    "Summarise the plot of Cinderella in two sentences.",
    "How do I change a flat tyre on a bicycle?",
    "Translate 'good morning' into Spanish.",
    "What should I pack for a weekend camping trip?",
)
MAX_BASE_PPL = 1000.0  # DEFAULT_TEXT is dropped when the model's own perplexity on it is above this


class DamageError(AruError, ValueError):
    """An edit's estimated damage is above the thresholds; nothing was written."""


class DamageCheckUnavailable(AruError):
    """The damage check cannot run (e.g. the checkpoint folder has no tokenizer)."""


@dataclass(frozen=True)
class Thresholds:
    """When an edit counts as damaging: first-token KL on X+ above ``max_kl`` (nats) or plain-text perplexity
    ratio (edited / original) above ``max_ppl_ratio``."""

    max_kl: float = 0.5
    max_ppl_ratio: float = 1.10

    def __post_init__(self):
        if not (self.max_kl > 0 and math.isfinite(self.max_kl)):
            raise ValueError(f"max_kl={self.max_kl!r} must be a positive number of nats (default 0.5)")
        if not (self.max_ppl_ratio > 1 and math.isfinite(self.max_ppl_ratio)):
            raise ValueError(f"max_ppl_ratio={self.max_ppl_ratio!r} must be a number > 1 (default 1.10)")


@dataclass(frozen=True)
class Damage:
    """The estimated damage of one edit (see the module docstring)."""

    kl: float
    n_prompts: int
    ppl_base: float | None = None
    ppl_edit: float | None = None
    label: str = ""

    @property
    def ppl_ratio(self) -> float | None:
        if self.ppl_base is None or self.ppl_edit is None:
            return None
        return self.ppl_edit / self.ppl_base

    def problems(self, thresholds: Thresholds | None = None) -> list[str]:
        """Why the edit is damaging (empty: it is not)."""
        t = thresholds or Thresholds()
        out = []
        if not math.isfinite(self.kl) or self.kl > t.max_kl:
            out.append(f"first-token KL on X+ {self.kl:.3g} nats > {t.max_kl:g}")
        r = self.ppl_ratio
        if r is not None and (not math.isfinite(r) or r > t.max_ppl_ratio):
            out.append(
                f"plain-text perplexity {self.ppl_base:.4g} -> {self.ppl_edit:.4g} (x{r:.3g} > x{t.max_ppl_ratio:g})"
            )
        return out

    def damaging(self, thresholds: Thresholds | None = None) -> bool:
        return bool(self.problems(thresholds))

    def summary(self) -> str:
        s = f"first-token KL on {self.n_prompts} X+ prompts {self.kl:.3g} nats"
        if self.ppl_ratio is not None:
            s += f", plain-text perplexity {self.ppl_base:.4g} -> {self.ppl_edit:.4g} (x{self.ppl_ratio:.3g})"
        return (f"{self.label}: " if self.label else "") + s

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "kl": self.kl,
            "n_prompts": self.n_prompts,
            "ppl_base": self.ppl_base,
            "ppl_edit": self.ppl_edit,
            "ppl_ratio": self.ppl_ratio,
        }


def usable_text(tokenizer, text: str) -> bool:
    """Whether ``tokenizer`` has an English vocabulary for ``text``: under 2% unknown tokens and at most 0.4 tokens
    per character (English BPE vocabularies give about 0.2; the toy organism's, spelling English out, about 0.5)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    unk = tokenizer.unk_token_id
    if not ids or len(ids) / max(len(text), 1) > 0.4:
        return False
    return unk is None or sum(i == unk for i in ids) / len(ids) < 0.02


class DamageProbe:
    """Measures :class:`Damage` of many edit plans on one loaded model: the original's first-token
    distributions and plain-text perplexity are computed once.

    ``prompts``: X+ user prompts (the first ``max_prompts`` are used); ``text``: plain text for the perplexity
    (None: :data:`DEFAULT_TEXT` when the tokenizer can encode it, else no perplexity; ``""``: no perplexity).
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompts: Sequence[str],
        *,
        text: str | None = None,
        max_prompts: int = 16,
        max_text_tokens: int = 512,
        system: str | None = None,
        raw: bool = False,
        batch_size: int = 16,
    ):
        from aru.evaluate import encode_prompts, first_token_logprobs, retain_loss

        prompts = list(prompts)[:max_prompts]
        if not prompts:
            raise ValueError("the damage check needs at least one X+ prompt")
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self.ids = encode_prompts(tokenizer, prompts, system=system, raw=raw)
        self.base_lp = first_token_logprobs(model, tokenizer, self.ids, batch_size=batch_size)
        default_text = text is None
        if text is None:
            text = DEFAULT_TEXT if usable_text(tokenizer, DEFAULT_TEXT) else ""
        if text:
            ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_text_tokens]
            text = tokenizer.decode(ids)
        self.text = text
        self._retain = retain_loss
        self.ppl_base = retain_loss(model, tokenizer, text, progress=False)["perplexity"] if text else None
        if self.ppl_base is not None and self.ppl_base > MAX_BASE_PPL and default_text:
            self.text, self.ppl_base = "", None  # the model does not model English (e.g. the toy organism)

    @torch.no_grad()
    def measure(self, plan, label: str = "") -> Damage:
        """The damage of ``plan`` (an :class:`aru.model_edit.EditPlan`), measured with projection hooks."""
        from aru.evaluate import first_token_logprobs, kl_div
        from aru.model_edit import projection_hooks

        with projection_hooks(self.model, plan):
            lp = first_token_logprobs(self.model, self.tokenizer, self.ids, batch_size=self.batch_size)
            ppl = (
                self._retain(self.model, self.tokenizer, self.text, progress=False)["perplexity"] if self.text else None
            )
        kl = float(kl_div(self.base_lp, lp).mean())
        return Damage(kl, len(self.ids), self.ppl_base, ppl, label)


def choose_safe_layer(
    ranked: Sequence[int],
    measure: Callable[[int], Damage],
    *,
    thresholds: Thresholds | None = None,
    max_tries: int = 8,
) -> tuple[int | None, list[Damage]]:
    """The first layer of ``ranked`` (best first) whose edit ``measure(layer)`` is not damaging, trying at most
    ``max_tries``; (None, damages) when every tried layer is damaging."""
    damages = []
    for ly in list(ranked)[:max_tries]:
        d = measure(ly)
        damages.append(d)
        if not d.damaging(thresholds):
            return ly, damages
    return None, damages


def refusal_message(damage: Damage, thresholds: Thresholds | None, advice: str) -> str:
    """The text of the :class:`DamageError` for a damaging edit."""
    why = "; ".join(damage.problems(thresholds))
    return (
        f"refusing to write: the edit would damage the model ({why}). {advice} To write it anyway, pass --force-damage."
    )


def layer_ranking(table: Sequence[dict[str, Any]]) -> list[int]:
    """Layers of an ``aru fit`` table, best first: held-out AUROC (3 decimals), then held-out d′."""
    return [r["layer"] for r in sorted(table, key=lambda r: (-round(r["auroc"], 3), -r["separation"]))]


def guard_fit(
    model,
    tokenizer,
    result,
    prompts: Sequence[str],
    *,
    text: str | None = None,
    thresholds: Thresholds | None = None,
    force: bool = False,
    max_tries: int = 8,
    system: str | None = None,
    raw: bool = False,
    log: Callable[[str], None] | None = None,
):
    """``aru fit``'s guard: the default layer becomes the best-separating layer whose edit (its basis projected out
    of every writer, λ = 1) is not damaging. Returns ``(FitResult, [Damage, ...])``; raises :class:`DamageError`
    when each of the ``max_tries`` best layers is damaging, unless ``force`` (then the least damaging is kept)."""
    from aru.capture import decoder_layers
    from aru.directions import Directions
    from aru.estimators import FitResult
    from aru.model_edit import make_plan

    num_layers = len(decoder_layers(model)[1])
    probe = DamageProbe(model, tokenizer, prompts, text=text, system=system, raw=raw)

    def measure(ly: int) -> Damage:
        d = probe.measure(make_plan(result.directions, num_layers, source_layer=ly), label=f"layer {ly}")
        if log:
            log(f"damage check {d.summary()}{'  DAMAGING' if d.damaging(thresholds) else ''}")
        return d

    ranked = layer_ranking(result.table)
    chosen, damages = choose_safe_layer(ranked, measure, thresholds=thresholds, max_tries=max_tries)
    if chosen is None:
        worst = damages[0]
        least = min(damages, key=_badness)
        method = result.directions.metadata.get("method", "")
        other = "diff-means" if method != "diff-means" else "pca-omega"
        advice = (
            f"The {len(damages)} best-separating layers {ranked[: len(damages)]} all fail the check (least damaging: "
            f"{least.summary()}). Try --method {other}, a narrower --layers range, or edit fewer layers / a lower "
            "--strength with aru edit."
        )
        if not force:
            raise DamageError(refusal_message(worst, thresholds, advice))
        chosen = int(least.label.split()[-1])
    meta = dict(result.directions.metadata, default_layer=str(chosen))
    final = next(d for d in damages if d.label == f"layer {chosen}")
    meta.update(
        damage_kl=f"{final.kl:.6g}", damage_ppl_ratio="" if final.ppl_ratio is None else f"{final.ppl_ratio:.6g}"
    )
    dirs = Directions(result.directions.bases, result.directions.hidden_size, meta, result.directions.extras)
    return FitResult(dirs, result.table, chosen), damages


def _badness(d: Damage) -> float:
    return d.kl + (0.0 if d.ppl_ratio is None else math.log(max(d.ppl_ratio, 1e-9)))


def check_edit(
    model: str,
    directions,
    *,
    prompts: Sequence[str] | None = None,
    text: str | None = None,
    thresholds: Thresholds | None = None,
    force: bool = False,
    revision: str | None = None,
    layers=None,
    source_layer=None,
    per_layer: bool = False,
    k: int | None = None,
    strength: float = 1.0,
) -> Damage:
    """``aru edit``'s guard: load ``model`` (float32), measure the damage of the edit ``aru edit`` would write (the
    same :func:`aru.model_edit.make_plan` arguments) with projection hooks, and raise :class:`DamageError` when it
    is damaging, unless ``force``. ``prompts``: X+ prompts (default: the ``damage_prompts`` ``aru fit`` stored in
    the directions file); ``text``: plain text for the perplexity (default :data:`DEFAULT_TEXT`)."""
    import json

    from aru.capture import decoder_layers, load_model
    from aru.checkpoint import resolve_model
    from aru.directions import Directions, load_directions
    from aru.model_edit import make_plan

    dirs = directions if isinstance(directions, Directions) else load_directions(directions)
    if prompts is None:
        stored = dirs.metadata.get("damage_prompts")
        prompts = json.loads(stored) if stored else None
    folder, _, _ = resolve_model(model, revision=revision)
    from aru.checkpoint import load_config

    load_config(folder, check_arch=False)  # a malformed config gets aru's clear error before transformers sees it
    try:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError, TypeError) as exc:
        raise DamageCheckUnavailable(f"{str(model)!r} has no loadable tokenizer ({str(exc).splitlines()[0]})") from exc
    mdl, tok = load_model(str(folder), dtype="float32")
    if prompts is None:
        if not usable_text(tok, " ".join(DEFAULT_PROMPTS)):
            raise DamageCheckUnavailable(
                "no X+ prompts: this directions file has none stored (it was not written by aru fit with its damage "
                "check) and the model's tokenizer cannot encode aru's English defaults; pass --good FILE to run it"
            )
        prompts = list(DEFAULT_PROMPTS)
    num_layers = len(decoder_layers(mdl)[1])
    plan = make_plan(
        dirs, num_layers, layers=layers, source_layer=source_layer, strength=strength, per_layer=per_layer, k=k
    )
    system = dirs.metadata.get("system")
    raw = dirs.metadata.get("chat_template") == "raw"
    probe = DamageProbe(mdl, tok, prompts, text=text, system=system, raw=raw)
    dmg = probe.measure(plan, label="this edit")
    if dmg.damaging(thresholds) and not force:
        src = plan.info.get("source_layer")
        if dirs.metadata.get("damage_kl") and str(src) != dirs.metadata.get("default_layer"):
            hint = f"use aru fit's damage-checked default layer ({dirs.metadata['default_layer']}: drop --source-layer)"
        else:
            hint = f"try another --source-layer than {src}, or refit with aru fit (it checks every default it picks)"
        advice = f"To fix it: {hint}; or a lower --strength, fewer --layers, or --method diff-means."
        raise DamageError(refusal_message(dmg, thresholds, advice))
    return dmg
