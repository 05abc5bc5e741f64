"""Recipes: a TOML file that drives ``aru run`` from prompts to a verified, evaluated checkpoint.

A recipe has the sections ``[model]`` (required), ``[prompts]``, ``[fit]``, ``[select]``, ``[edit]``, ``[eval]`` and
the optional ``[push]``; every key has its default in the dataclasses below (the one place defaults live). Unknown
sections and keys are rejected, naming the key and its section; values are type-checked and range-checked.

Relative paths of local prompt and retain files are resolved against the recipe's folder; ``edit.output`` against
the current directory. ``prompts.source = "organism"`` uses the built-in organism's train/val/test prompt splits.

Example (the organism demo, ``recipes/organism.toml``)::

    [model]
    id = "organism:tuned"

    [prompts]
    source = "organism"

    [select]
    kl_budget = 0.5
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aru.errors import AruError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SOURCES = ("files", "organism")
DTYPES = ("float32", "bfloat16", "float16")
COMPUTE_DTYPES = ("float32", "float64")
POSTNORM_MODES = ("orthogonal", "oblique")
EDIT_RANGES = ("all", "from_source", "to_source")


class RecipeError(AruError, ValueError):
    """A recipe file is malformed: unknown section or key, wrong type, value out of range."""


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: the fine-tuned model to unlearn."""

    id: str = ""  # required: a local folder, a Hub repo id (org/name) or organism:tuned
    revision: str | None = None
    dtype: str = "float32"  # dtype used to fit, select and evaluate (the checkpoint keeps its own)
    device: str = "cpu"


@dataclass(frozen=True)
class PromptsSpec:
    """``[prompts]``: X− (the behaviour to remove) and X+ (prompts that must keep working)."""

    source: str = "files"  # "files" (bad/good below) or "organism" (the organism's own splits)
    bad: str | None = None  # .txt/.jsonl/.json/.csv path or hf://datasets/org/name/file
    good: str | None = None
    field: str | None = None  # jsonl/json field holding the prompt
    column: str | None = None  # csv column holding the prompt
    revision: str | None = None  # revision of hf:// prompt files
    fractions: tuple[float, ...] = (0.6, 0.2, 0.2)  # train / validation / test
    seed: int = 0
    max_prompts: int | None = None  # cap each prompt file (after shuffling with seed) before splitting
    system: str | None = None
    raw: bool = False  # no chat template


@dataclass(frozen=True)
class FitSpec:
    """``[fit]``: estimators and fitting layers to try (every combination is a selection candidate)."""

    methods: tuple[str, ...] = ("diff-means", "pca-omega")
    layers: tuple[int, ...] | None = None  # residual indices (0 = embeddings, L = last layer's output); None: all
    k: tuple[int, ...] = (1, 2)
    position: str = "last"
    batch_size: int = 16


@dataclass(frozen=True)
class SelectSpec:
    """``[select]``: the candidate grid beyond the fit, the budget and the confirmation step."""

    strengths: tuple[float, ...] = (1.0,)
    edit_layers: tuple[str, ...] = ("all",)  # "all", "from_source", "to_source" or a layer list like "2-5"
    kl_budget: float = 0.2  # max first-token KL (nats) on validation X+ for the chosen candidate
    confirm: int = 3  # best candidates confirmed with full generations
    max_prompts: int = 64  # validation prompts per class used for scoring (a seeded subset)
    max_new_tokens: int = 16  # generation length when confirming
    seed: int = 0


@dataclass(frozen=True)
class EditSpec:
    """``[edit]``: the output checkpoint."""

    output: str = "aru-output"
    compute_dtype: str = "float32"  # precision of the fold arithmetic (every tensor keeps its own dtype)
    postnorm: str = "orthogonal"  # fold mode for post-norm families (Gemma-2/3): orthogonal or oblique
    keep_tied: bool = False
    overwrite: bool = False
    format: str = "checkpoint"  # checkpoint (the folded model) or peft (an exact LoRA adapter, aru.lora)
    adapter_bias: str = "auto"  # peft: edited biases as lora_B.bias (lora_bias) or whole modules (replace)


@dataclass(frozen=True)
class EvalSpec:
    """``[eval]``: the final evaluation on the test split."""

    markers: tuple[str, ...] | None = None  # None: aru.evaluate.DEFAULT_MARKERS
    extra_markers: tuple[str, ...] = ()
    max_new_tokens: int = 32
    kl_tokens: int = 8
    batch_size: int = 32
    max_prompts: int | None = None  # cap each test split
    retain: str | None = None  # plain-text file for cross-entropy / perplexity
    organism: bool | None = None  # organism ground truth; None: when the model is an organism


@dataclass(frozen=True)
class PushSpec:
    """``[push]``: publish the output to the Hub at the end of ``aru run``."""

    repo_id: str = ""  # required in this section
    private: bool = False


@dataclass(frozen=True)
class Recipe:
    """A parsed, validated recipe."""

    model: ModelSpec
    prompts: PromptsSpec = field(default_factory=PromptsSpec)
    fit: FitSpec = field(default_factory=FitSpec)
    select: SelectSpec = field(default_factory=SelectSpec)
    edit: EditSpec = field(default_factory=EditSpec)
    eval: EvalSpec = field(default_factory=EvalSpec)
    push: PushSpec | None = None
    name: str = ""
    description: str = ""
    base_dir: Path = Path(".")
    text: str = ""  # the TOML source, recorded in aru.json

    def path(self, value: str | None) -> str | None:
        """A local file path relative to the recipe's folder (``hf://`` and absolute paths unchanged)."""
        if value is None or value.startswith("hf://") or Path(value).is_absolute():
            return value
        return str(self.base_dir / value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "description": self.description}
        for name in SECTIONS:
            spec = getattr(self, name)
            if spec is not None:
                out[name] = dataclasses.asdict(spec)
        return out


SECTIONS: dict[str, type] = {
    "model": ModelSpec,
    "prompts": PromptsSpec,
    "fit": FitSpec,
    "select": SelectSpec,
    "edit": EditSpec,
    "eval": EvalSpec,
    "push": PushSpec,
}
TOP_LEVEL = ("name", "description")


def defaults() -> dict[str, dict[str, Any]]:
    """{section: {key: default}} straight from the dataclasses (what the documentation must say)."""
    return {name: {f.name: f.default for f in dataclasses.fields(cls)} for name, cls in SECTIONS.items()}


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (lists become tuples, ints are accepted for floats)."""
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(hint)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except RecipeError as exc:
                errors.append(str(exc))
        raise RecipeError(errors[-1] if len(errors) == 1 else f"{where} = {value!r} has the wrong type")
    if origin is tuple:
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            value = [value]  # a single value stands for a one-element list
        if not isinstance(value, list) or not value:
            raise RecipeError(f"{where} = {value!r} must be a non-empty list of {_type_name(item)}")
        return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{where} = {value!r} must be a number")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{where} = {value!r} must be an integer")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{where} = {value!r} must be true or false")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise RecipeError(f"{where} = {value!r} must be a string")
        return value
    raise AssertionError(f"unhandled type {hint!r} for {where}")  # internal: a new field type needs a case


def _section(name: str, cls: type, table: Any) -> Any:
    if not isinstance(table, dict):
        raise RecipeError(f"[{name}] must be a table (a [{name}] section), got {table!r}")
    hints = typing.get_type_hints(cls)
    known = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in table.items():
        if key not in hints:
            raise RecipeError(f"unknown key {key!r} in [{name}]; known keys: {', '.join(known)}")
        kwargs[key] = _coerce(value, hints[key], f"{name}.{key}")
    return cls(**kwargs)


def _one_of(where: str, value: Any, choices) -> None:
    if value not in choices:
        raise RecipeError(f"{where} = {value!r}; choose one of {', '.join(map(str, choices))}")


def validate(recipe: Recipe) -> Recipe:
    """Range and consistency checks; raises :class:`RecipeError` naming the key and the fix."""
    m, p, f, s, e, v = recipe.model, recipe.prompts, recipe.fit, recipe.select, recipe.edit, recipe.eval
    if not m.id:
        raise RecipeError("model.id is required: a model folder, a Hub repo id (org/name) or organism:tuned")
    _one_of("model.dtype", m.dtype, DTYPES)
    _one_of("prompts.source", p.source, SOURCES)
    if p.source == "files" and (not p.bad or not p.good):
        raise RecipeError(
            "prompts.bad and prompts.good are required with prompts.source = 'files' "
            "(prompt files, or hf://datasets/org/name/file.jsonl); or set prompts.source = 'organism'"
        )
    if p.source == "organism" and (p.bad or p.good):
        raise RecipeError("prompts.source = 'organism' uses the organism's own prompts; remove prompts.bad/good")
    if len(p.fractions) != 3 or any(x <= 0 for x in p.fractions) or abs(sum(p.fractions) - 1) > 1e-6:
        raise RecipeError(f"prompts.fractions = {list(p.fractions)} must be three positive numbers summing to 1")
    if p.max_prompts is not None and p.max_prompts < 5:
        raise RecipeError(f"prompts.max_prompts = {p.max_prompts} must be at least 5 (or left out)")
    from aru.capture import parse_position

    try:
        parse_position(f.position)
    except ValueError as exc:
        raise RecipeError(f"fit.position = {f.position!r}: {exc}") from exc
    if any(k < 1 for k in f.k):
        raise RecipeError(f"fit.k = {list(f.k)} must hold positive integers")
    if f.layers is not None and any(x < -64 for x in f.layers):
        raise RecipeError(f"fit.layers = {list(f.layers)} holds an index below -64")
    if f.batch_size < 1:
        raise RecipeError(f"fit.batch_size = {f.batch_size} must be >= 1")
    if len(set(f.methods)) != len(f.methods):
        raise RecipeError(f"fit.methods = {list(f.methods)} lists a method twice")
    from aru.select import known_methods

    for meth in f.methods:
        _one_of("fit.methods[]", meth, known_methods())
    for lam in s.strengths:
        if not 0.0 < lam <= 2.0:
            raise RecipeError(f"select.strengths holds {lam}; each strength must be in (0, 2] (1 = projection)")
    for rng in s.edit_layers:
        if rng not in EDIT_RANGES:
            from aru.model_edit import parse_layers

            try:
                parse_layers(rng, 10_000)
            except ValueError:
                raise RecipeError(
                    f"select.edit_layers holds {rng!r}; use {', '.join(EDIT_RANGES)} or a layer list like '2-5'"
                ) from None
    if not s.kl_budget > 0:
        raise RecipeError(f"select.kl_budget = {s.kl_budget} must be > 0 (nats of first-token KL on X+)")
    for key in ("confirm", "max_prompts", "max_new_tokens"):
        if getattr(s, key) < 1:
            raise RecipeError(f"select.{key} = {getattr(s, key)} must be >= 1")
    _one_of("edit.compute_dtype", e.compute_dtype, COMPUTE_DTYPES)
    _one_of("edit.postnorm", e.postnorm, POSTNORM_MODES)
    _one_of("edit.format", e.format, ("checkpoint", "peft"))
    _one_of("edit.adapter_bias", e.adapter_bias, ("auto", "lora_bias", "replace"))
    if not e.output:
        raise RecipeError("edit.output must name the output folder")
    from aru.evaluate import EvalConfig

    try:
        EvalConfig(
            markers=v.markers or ("x",),
            max_new_tokens=v.max_new_tokens,
            kl_tokens=v.kl_tokens,
            batch_size=v.batch_size,
        )
        if v.extra_markers:
            from aru.evaluate import compile_markers

            compile_markers(v.extra_markers)
    except ValueError as exc:
        raise RecipeError(f"[eval]: {exc}") from exc
    if v.max_prompts is not None and v.max_prompts < 1:
        raise RecipeError(f"eval.max_prompts = {v.max_prompts} must be >= 1")
    if recipe.push is not None:
        if not recipe.push.repo_id:
            raise RecipeError("[push] needs repo_id = 'you/model-name' (or remove the [push] section)")
        from aru.hub import check_repo_id

        check_repo_id(recipe.push.repo_id)
    return recipe


def parse_recipe(text: str, *, base_dir: str | Path = ".", source: str = "<recipe>") -> Recipe:
    """Parse and validate recipe TOML ``text``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{source} is not valid TOML: {exc}") from exc
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key in TOP_LEVEL:
            if not isinstance(value, str):
                raise RecipeError(f"{key} = {value!r} must be a string")
            kwargs[key] = value
        elif key in SECTIONS:
            kwargs[key] = _section(key, SECTIONS[key], value)
        else:
            raise RecipeError(
                f"unknown section or key {key!r} in {source}; known: {', '.join([*TOP_LEVEL, *SECTIONS])}"
            )
    if "model" not in kwargs:
        raise RecipeError(f"{source} has no [model] section; add [model] with id = 'org/name' or 'organism:tuned'")
    return validate(Recipe(**kwargs, base_dir=Path(base_dir), text=text))


def load_recipe(path: str | Path) -> Recipe:
    """Read, parse and validate a recipe file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"recipe {str(path)!r} does not exist; start from one in recipes/ (organism.toml)")
    return parse_recipe(path.read_text(encoding="utf-8"), base_dir=path.parent, source=str(path))


def shipped_recipes() -> dict[str, Path]:
    """{name: path} of the recipes shipped in the repository's ``recipes/`` folder (empty in a wheel install)."""
    folder = Path(__file__).resolve().parents[2] / "recipes"
    return {p.stem: p for p in sorted(folder.glob("*.toml"))}


def organism_recipe() -> Recipe:
    """The demo recipe: ``recipes/organism.toml`` when present, else the same recipe built in."""
    path = shipped_recipes().get("organism")
    if path is not None:
        return load_recipe(path)
    return parse_recipe(ORGANISM_TOML, source="built-in organism recipe")


ORGANISM_TOML = """\
name = "organism"
description = "Remove the built-in organism's fine-tuned refusal (offline demo)."

[model]
id = "organism:tuned"

[prompts]
source = "organism"

[fit]
methods = ["diff-means", "pca-omega"]
k = [1, 2]
batch_size = 256

[select]
strengths = [1.0]
edit_layers = ["all", "from_source"]
kl_budget = 0.3
confirm = 5
max_prompts = 160
max_new_tokens = 8

[edit]
output = "aru-organism-unlearned"

[eval]
max_new_tokens = 8
batch_size = 256
"""


def format_default(value: Any) -> str:
    """A default as the documentation writes it (TOML syntax; ``(required)`` for empty required strings, ``—``
    for None)."""
    if value is None:
        return "—"
    if value == "":
        return "(required)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(format_default(v) for v in value) + "]"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def defaults_markdown() -> str:
    """The reference table of every recipe key and its default (pasted into the docs; a test compares them)."""
    lines = ["| key | default |", "|---|---|"]
    for section, keys in defaults().items():
        for key, value in keys.items():
            lines.append(f"| `{section}.{key}` | `{format_default(value)}` |")
    return "\n".join(lines)
