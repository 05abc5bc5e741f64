"""Architecture knowledge derived from the model itself, and proven before it is used.

For a ``model_type`` outside the hand-written table (:data:`aru.arch.SPECS`), :func:`derive_spec` builds a
tiny random copy of the checkpoint's config (:mod:`aru.arch.shrink`: same layers, patterns, MoE mixes and
tying, small sizes) and finds, by measurement on that model:

1. the decoder layers (the ``nn.ModuleList`` of ``num_hidden_layers`` blocks) and the token embedding;
2. the residual-stream writers: starting from every module with parameters whose output has the hidden size
   (and every norm whose input is such a module's output, a post-norm), hooks project each candidate's
   output onto the complement of a random basis Q; a set is complete when no decoder-layer output keeps a
   component along Q. Candidates are then dropped kind by kind (``self_attn.q_proj`` in every layer is one
   kind) while the stream stays free of Q: what remains is the minimal set of writers;
3. each writer's layout: the subset of its own parameters, each folded along the axis that has the hidden
   size, that reproduces the projected output on the captured inputs (``out_in`` for nn.Linear, ``in_out``
   for Conv1D, fused experts ``(E, d, i)`` or ``(E, i, d)`` with their biases). A writer no fold reproduces
   is named in the refusal;
4. the names on disk: the tiny model is saved with ``save_pretrained`` and every in-memory writer tensor is
   matched, by value, to the tensors it is stored as (per-expert tensors, other prefixes);
5. the proof: the streaming editor folds a random basis into the saved tiny checkpoint through the derived
   spec; the result, loaded by transformers, must give the logits of the tiny model run with projection
   hooks, to :data:`EXACT_RTOL` relative (float32). Post-norm families (a norm after the writer) are
   ``approximate``: their deviation is recorded, and the edit is flagged.

The verdict and the deviation are a :class:`Proof`; derivations are cached per (model_type, shrunk config,
transformers version) in memory and on disk (``$ARU_CACHE_DIR`` or ``~/.cache/aru/arch``).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import re
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from aru.arch import _ANY, ArchSpec, Writer, _layer
from aru.arch.shrink import shrink_config_dict, signature
from aru.errors import UnsupportedArchitectureError

DERIVE_VERSION = 1
EXACT_RTOL = 1e-4  # fold vs hooks, max |Δlogit| / max |logit| in float32
LEAK_TOL = 1e-4  # max |Q h| / |h| of a decoder-layer output under the writers' projection hooks
MODULE_RTOL = 1e-5  # one writer module: folded output vs projected output
_MEMORY: dict[str, tuple[ArchSpec | None, Proof]] = {}


@dataclass
class Proof:
    """What the derivation measured: verdict ``exact`` / ``approximate`` / ``refused``."""

    model_type: str
    verdict: str
    reason: str = ""
    deviation: float | None = None  # fold vs hooks on the tiny model (relative max |Δlogit|)
    leak: float | None = None  # max |Q h| / |h| over layer outputs with the writers hooked
    transformers: str = ""
    derive_version: int = DERIVE_VERSION
    key: str = ""
    seconds: float = 0.0
    writers: list[str] = field(default_factory=list)  # writer kinds, e.g. "layers.{i}.self_attn.o_proj.weight"

    def to_dict(self) -> dict:
        return asdict(self)


class DerivationError(UnsupportedArchitectureError):
    """The derivation found no exact fold; the message names the module that breaks it."""


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)) or "norm" in type(module).__name__.lower()


def _copy(x):
    return x.detach().clone() if isinstance(x, torch.Tensor) else x


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)) and x and isinstance(x[0], torch.Tensor):
        return x[0]
    return None


def _kind(rel: str) -> str:
    """``mlp.experts.3.down_proj`` → ``mlp.experts.{}.down_proj``: one kind per position in a block."""
    return re.sub(r"(?<=\.)\d+(?=\.|$)|^\d+(?=\.)", "{}", rel)


def find_layers(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(path, ModuleList) of the decoder layers: the ModuleList of ``num_hidden_layers`` modules, shortest path."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    n = getattr(config, "num_hidden_layers", None)
    lists = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if n is not None:
        exact = [(name, m) for name, m in lists if len(m) == n]
        if exact:
            return min(exact, key=lambda t: (t[0].count("."), t[0]))
    raise DerivationError(
        f"{type(model).__name__}: no ModuleList of num_hidden_layers={n} decoder layers; aru cannot find the blocks"
    )


class _Capture:
    """Forward hooks recording every module's inputs and first output tensor (one forward pass)."""

    def __init__(self, model: nn.Module, names: list[str]):
        self.inputs: dict[str, tuple] = {}
        self.outputs: dict[str, torch.Tensor] = {}
        self.handles = []
        for name in names:
            self.handles.append(
                model.get_submodule(name).register_forward_hook(self._hook(name), with_kwargs=True, always_call=False)
            )

    def _hook(self, name):
        def hook(_m, args, kwargs, out):
            if name not in self.outputs:  # first call only (layers run once per forward)
                # copies: blocks add into their writers' outputs in place (falcon: mlp_output += attn_output)
                self.inputs[name] = (tuple(_copy(a) for a in args), {k: _copy(v) for k, v in kwargs.items()})
                t = _first_tensor(out)
                if t is not None:
                    self.outputs[name] = t.detach().clone()

        return hook

    def remove(self):
        for h in self.handles:
            h.remove()


def _project(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    qc = q.to(x.dtype)
    return x - (x @ qc.T) @ qc


@contextlib.contextmanager
def _hooks(model: nn.Module, names: set[str], q: torch.Tensor):
    handles = []

    def hook(_m, _inp, out):
        if isinstance(out, tuple):
            return (_project(out[0], q), *out[1:])
        return _project(out, q)

    try:
        for name in names:
            handles.append(model.get_submodule(name).register_forward_hook(hook))
        yield
    finally:
        for h in handles:
            h.remove()


def _leak(h: torch.Tensor, q: torch.Tensor) -> float:
    h = h.double().reshape(-1, h.shape[-1])
    return float(((h @ q.double().T).norm(dim=-1) / h.norm(dim=-1).clamp_min(1e-30)).max())


@dataclass
class _Probe:
    """The tiny model and what one capture pass saw."""

    model: nn.Module
    stack: str
    layers: nn.ModuleList
    d: int
    ids: torch.Tensor
    q: torch.Tensor
    embed: str
    captured: _Capture
    candidates: dict[str, list[str]]  # kind → module names (writers)
    postnorms: dict[str, list[str]]  # kind → norm module names
    pos_embeds: list[str]
    feeds: dict[str, str]  # post-norm module → the module whose output is its input

    def leaks(self, hooked: set[str], watch: list[str] = ()) -> float:
        """Max leak over every decoder layer's output (and the inputs of ``watch``) with ``hooked`` projected."""
        names = [f"{self.stack}.{i}" for i in range(len(self.layers))] + list(watch)
        cap = _Capture(self.model, names)
        try:
            with torch.no_grad(), _hooks(self.model, hooked, self.q):
                self.model(self.ids)
        finally:
            cap.remove()
        out = [_leak(cap.outputs[f"{self.stack}.{i}"], self.q) for i in range(len(self.layers))]
        for w in watch:
            if w in cap.inputs:
                x = _first_tensor(cap.inputs[w][0]) if cap.inputs[w][0] else None
                if x is not None:
                    out.append(_leak(x, self.q))
        return max(out)

    def layer_leaks(self, hooked: set[str]) -> list[float]:
        names = [f"{self.stack}.{i}" for i in range(len(self.layers))]
        cap = _Capture(self.model, names)
        try:
            with torch.no_grad(), _hooks(self.model, hooked, self.q):
                self.model(self.ids)
        finally:
            cap.remove()
        first = _first_tensor(cap.inputs[names[0]][0]) if cap.inputs[names[0]][0] else None
        if first is None:
            first = cap.inputs[names[0]][1].get("hidden_states")
        return [_leak(first, self.q)] + [_leak(cap.outputs[n], self.q) for n in names]


def _probe(model: nn.Module, seed: int = 0) -> _Probe:
    stack, layers = find_layers(model)
    emb_module = model.get_input_embeddings()
    embed = next(n for n, m in model.named_modules() if m is emb_module)
    d = emb_module.weight.shape[-1]
    head = model.get_output_embeddings()
    gen = torch.Generator().manual_seed(seed)
    vocab = emb_module.weight.shape[0]
    ids = torch.randint(min(4, vocab - 1), vocab, (2, 12), generator=gen)
    from aru.directions import orthonormalize

    q = orthonormalize(torch.randn(2, d, generator=gen, dtype=torch.float64)).float()
    names = [n for n, _ in model.named_modules() if n.startswith(stack + ".") and n.count(".") > stack.count(".") + 1]
    names += [f"{stack}.{i}" for i in range(len(layers))]
    cap = _Capture(model, names)
    try:
        with torch.no_grad():
            model(ids)
    finally:
        cap.remove()
    candidates: dict[str, list[str]] = {}
    norms: dict[str, list[str]] = {}
    feeds: dict[str, str] = {}
    for name in names:
        if name.count(".") == stack.count(".") + 1:
            continue  # the layer itself
        module = model.get_submodule(name)
        out = cap.outputs.get(name)
        if out is None or not out.is_floating_point() or out.shape[-1] != d:
            continue
        layer_prefix = ".".join(name.split(".")[: stack.count(".") + 2])
        rel = name[len(layer_prefix) + 1 :]
        if _is_norm(module):
            x = _first_tensor(cap.inputs[name][0]) if cap.inputs.get(name, ((),))[0] else None
            src = _source_of(x, cap, layer_prefix, name, model) if x is not None else None
            if src is not None:
                norms.setdefault(_kind(rel), []).append(name)
                feeds[name] = src
        elif any(True for _ in module.parameters(recurse=False)):
            candidates.setdefault(_kind(rel), []).append(name)
    pos = [
        n
        for n, m in model.named_modules()
        if isinstance(m, nn.Embedding)
        and m is not emb_module
        and m is not head
        and not n.startswith(stack + ".")
        and m.weight.shape[-1] == d
    ]
    return _Probe(model, stack, layers, d, ids, q, embed, cap, candidates, norms, pos, feeds)


def _source_of(x: torch.Tensor, cap: _Capture, layer_prefix: str, norm: str, model: nn.Module) -> str | None:
    """The non-norm module of the same layer whose output is exactly ``x`` (a post-norm's input), else None."""
    for name, out in cap.outputs.items():
        if name == norm or not name.startswith(layer_prefix + ".") or out.shape != x.shape:
            continue
        if _is_norm(model.get_submodule(name)):
            continue
        if torch.equal(out, x):
            return name
    return None


def _depth(kind: str) -> int:
    return kind.count(".")


def _select(p: _Probe) -> tuple[set[str], dict[str, list[str]], dict[str, list[str]], list[str]]:
    """The minimal hooked set: (hooked module names, writer kinds kept, post-norm kinds kept, pos embeds kept)."""
    writers = dict(p.candidates)
    postnorms = dict(p.postnorms)
    pos = list(p.pos_embeds)

    def hooked():
        return {n for v in writers.values() for n in v} | {n for v in postnorms.values() for n in v} | {p.embed, *pos}

    full = p.layer_leaks(hooked())
    if max(full) > LEAK_TOL:
        i = next(i for i, v in enumerate(full) if v > LEAK_TOL)
        if i == 0:
            raise DerivationError(
                f"the input of the first decoder layer keeps {full[0]:.2g} of the basis with the embeddings "
                "projected: something between the embeddings and layer 0 (a norm or a non-linear module) "
                "re-injects the direction, so no fold of the weights can remove it"
            )
        layer = p.layers[i - 1]
        raise DerivationError(
            f"decoder layer {i - 1} ({type(layer).__name__}) writes a component along the basis ({full[i]:.2g}) "
            "that no module with parameters, projected, removes (a residual added outside any such module, "
            "or a norm over the residual sum): aru cannot fold it exactly"
        )
    for kind in sorted(postnorms, key=_depth):
        keep = postnorms.pop(kind)
        if p.leaks(hooked()) > LEAK_TOL:
            postnorms[kind] = keep
    watch = [n for v in postnorms.values() for n in v]
    for kind in sorted(writers, key=_depth):
        keep = writers.pop(kind)
        if p.leaks(hooked(), watch) > LEAK_TOL:
            writers[kind] = keep
    for name in list(pos):
        pos.remove(name)
        if p.layer_leaks(hooked())[0] > LEAK_TOL:
            pos.append(name)
    return hooked(), writers, postnorms, pos


def _layout_options(module: nn.Module, pname: str, p: torch.Tensor, d: int) -> list[str]:
    fused = any(x.ndim == 3 for x in module.parameters(recurse=False))
    if isinstance(module, nn.Embedding):
        return ["embed"] if pname == "weight" else []
    if p.ndim == 1:
        return ["bias"] if p.shape[0] == d else []
    if p.ndim == 2:
        out = []
        if p.shape[0] == d and not fused:
            out.append("out_in")
        if p.shape[1] == d:
            out.append("experts_bias" if fused else "in_out")
        return out
    if p.ndim == 3:
        return [x for x, ax in (("experts_out_in", 1), ("experts_in_out", 2)) if p.shape[ax] == d]
    return []


@torch.no_grad()
def find_layout(module: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor, q: torch.Tensor, d: int):
    """{param name: layout}: the smallest set of the module's own parameters whose fold reproduces the
    projected output on the captured inputs; None when none does."""
    from aru.fold import fold_tensor

    target = _project(out, q)
    scale = float(target.abs().max()) or 1.0
    params = dict(module.named_parameters(recurse=False))
    options = {n: _layout_options(module, n, p, d) for n, p in params.items()}
    options = {n: o for n, o in options.items() if o}
    names = sorted(options)
    for size in range(1, len(names) + 1):
        for chosen in itertools.combinations(names, size):
            for layouts in itertools.product(*(options[n] for n in chosen)):
                saved = {n: params[n].data.clone() for n in chosen}
                try:
                    for n, lay in zip(chosen, layouts, strict=True):
                        params[n].data.copy_(fold_tensor(saved[n], q, lay, name=n))
                    got = _first_tensor(module(*args, **kwargs))
                finally:
                    for n in chosen:
                        params[n].data.copy_(saved[n])
                if got is not None and got.shape == target.shape:
                    if float((got - target).abs().max()) <= MODULE_RTOL * scale:
                        return dict(zip(chosen, layouts, strict=True))
    return None


def _role(rel: str) -> str:
    top = rel.split(".")[0]
    return "mlp" if re.search(r"mlp|moe|ffn|feed_forward|expert|fc|dense_4h|c_fc", top) else "attn"


def _norm_offset(module: nn.Module, x: torch.Tensor) -> float:
    """1.0 when the norm computes x · (1 + w) (Gemma), else 0.0: measured with its parameters zeroed."""
    saved = {n: p.data.clone() for n, p in module.named_parameters(recurse=False)}
    try:
        for p in module.parameters(recurse=False):
            p.data.zero_()
        with torch.no_grad():
            out = _first_tensor(module(x))
    finally:
        for n, p in module.named_parameters(recurse=False):
            p.data.copy_(saved[n])
    return 1.0 if out is not None and float(out.abs().max()) > 1e-3 else 0.0


def _disk_names(model: nn.Module, folder: Path, names: list[str]) -> dict[str, list[tuple[str, int]]]:
    """memory parameter name → the tensor names it is stored as in ``folder`` (matched by value)."""
    from safetensors import safe_open

    from aru.checkpoint import list_shards

    shards, _ = list_shards(folder)
    disk: dict[str, torch.Tensor] = {}
    for s in shards:
        with safe_open(folder / s, framework="pt") as f:
            for k in f.keys():
                disk[k] = f.get_tensor(k)
    params = dict(model.named_parameters())
    out: dict[str, list[str]] = {}
    for name in names:
        if name in disk:
            out[name] = [(name, disk[name].ndim)]
            continue
        p = params[name].detach()
        hits = []
        for k, t in disk.items():
            if t.ndim == p.ndim - 1 and p.ndim >= 2:
                slices = [p[e] for e in range(p.shape[0])]
                if any(t.shape == s.shape and torch.equal(t, s) for s in slices):
                    hits.append((k, t.ndim))
            elif t.shape == p.shape and torch.equal(t, p):
                hits.append((k, t.ndim))
        out[name] = hits
    return out


def _pattern(name: str, stack_leaf: str, layer: int | None) -> str:
    """A writer regex from one tensor name: any prefix, the layer index a group, other indices ``\\d+``."""
    if layer is None:
        return _ANY + re.escape(".".join(name.split(".")[-2:]))
    parts = name.split(".")
    at = next(
        (i for i in range(1, len(parts)) if parts[i] == str(layer) and parts[i - 1] == stack_leaf),
        next((i for i in range(len(parts)) if parts[i] == str(layer)), None),
    )
    if at is None:
        raise DerivationError(f"stored tensor {name!r} has no layer index {layer}")
    rest = r"\.".join(r"\d+" if x.isdigit() else re.escape(x) for x in parts[at + 1 :])
    return _layer(re.escape(parts[at - 1]), rest)


def _disk_layout(mem_layout: str, mem: torch.Tensor, disk_ndim: int) -> str:
    if disk_ndim == mem.ndim:
        return mem_layout
    return {"experts_out_in": "out_in", "experts_in_out": "in_out", "experts_bias": "bias"}[mem_layout]


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def tiny_config(model_type: str, config=None, max_layers: int | None = None):
    """(config object, shrunk dict): a tiny copy of ``config`` (a config object or config.json dict; default:
    the config class's defaults); ``max_layers`` see :func:`aru.arch.shrink.shrink_config_dict`."""
    from transformers import AutoConfig

    try:
        base = AutoConfig.for_model(model_type)
    except (ValueError, KeyError):
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is unknown to the installed transformers {_transformers_version()}; "
            "upgrade transformers, or check config.json"
        ) from None
    if config is None:
        raw = base.to_dict()
    elif hasattr(config, "to_dict"):
        raw = config.to_dict()
    else:
        raw = dict(config)
    raw = {**raw, "model_type": model_type}
    shrunk = shrink_config_dict(raw, max_layers)
    return type(base).from_dict(shrunk), shrunk


def build_tiny(config, seed: int = 0) -> nn.Module:
    """A random float32 model from ``config`` whose constant parameters (zero biases, unit norm gains) are
    perturbed: a writer whose output is zero would hide from the derivation."""
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32, experts_implementation="eager")
        except (TypeError, ValueError):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        with torch.no_grad():
            for p in model.parameters():
                if p.is_floating_point() and p.numel() and float(p.max() - p.min()) == 0.0:
                    p.add_(torch.randn_like(p) * 0.2)
    return model.eval()


def _layer_of(name: str, stack: str) -> int | None:
    if not name.startswith(stack + "."):
        return None
    return int(name[len(stack) + 1 :].split(".")[0])


def _postnorm_roles(p: _Probe, writers: dict[str, list[str]], postnorms: dict[str, list[str]]) -> dict[str, str]:
    """role → post-norm suffix (relative to the block), checked in every layer."""
    result: dict[str, str] = {}
    for kind, norms in postnorms.items():
        for norm in norms:
            src = p.feeds[norm]
            layer = _layer_of(norm, p.stack)
            behind = [
                m
                for ms in writers.values()
                for m in ms
                if _layer_of(m, p.stack) == layer and (m == src or m.startswith(src + "."))
            ]
            if not behind:
                raise DerivationError(f"post-norm {norm} follows {src}, which holds no writer aru found")
            block = f"{p.stack}.{layer}."
            for m in behind:
                role = _role(m[len(block) :])
                if result.setdefault(role, kind) != kind:
                    raise DerivationError(
                        f"{m}: writers of role {role!r} sit behind different post-norms ({result[role]}, {kind})"
                    )
    for role, kind in result.items():
        for ms in writers.values():
            for m in ms:
                layer = _layer_of(m, p.stack)
                block = f"{p.stack}.{layer}."
                norm = block + kind.replace("{}", "0")
                if _role(m[len(block) :]) == role and norm in p.feeds:
                    src = p.feeds[norm]
                    if not (m == src or m.startswith(src + ".")):
                        raise DerivationError(f"{m} is a {role} writer but is not behind the post-norm {norm}")
    return result


def _mem_writers(p: _Probe, writers: dict[str, list[str]], pos: list[str]) -> list[tuple[str, str, str, int | None]]:
    """(parameter name, layout, role, layer) for every writer parameter of the tiny model."""
    out = [(f"{p.embed}.weight", "embed", "embed", None)] + [(f"{n}.weight", "embed", "pos_embed", None) for n in pos]
    for _, mods in sorted(writers.items()):
        first = mods[0]
        module = p.model.get_submodule(first)
        args, kwargs = p.captured.inputs[first]
        layouts = find_layout(module, args, kwargs, p.captured.outputs[first], p.q, p.d)
        if layouts is None:
            raise DerivationError(
                f"{first} ({type(module).__name__}) writes into the residual stream, but no fold of its own "
                "parameters reproduces the projection of its output: aru cannot fold it exactly"
            )
        for m in mods:
            layer = _layer_of(m, p.stack)
            role = _role(m[len(f"{p.stack}.{layer}.") :])
            out += [(f"{m}.{n}", lay, role, layer) for n, lay in sorted(layouts.items())]
    return out


def _assemble(p: _Probe, mem: list, disk: dict[str, list[str]], postnorm: dict, offset: float, lm_head: str):
    leaf = p.stack.split(".")[-1]
    params = dict(p.model.named_parameters())
    writers: dict[tuple, Writer] = {}
    for name, layout, role, layer in mem:
        stored = [(name, layout)] + [(k, _disk_layout(layout, params[name], nd)) for k, nd in disk.get(name, [])]
        for n, lay in stored:
            w = Writer(_pattern(n, leaf, layer), lay, role)
            writers.setdefault((w.pattern, w.layout, w.role), w)
    suffixes = {role: kind.replace("{}", "0") for role, kind in postnorm.items()}
    return ArchSpec(
        p.model.config.model_type,
        tuple(writers.values()),
        lm_head=lm_head,
        postnorm=suffixes,
        norm_offset=offset,
        notes="derived from the model and proven on a tiny copy (aru.arch.derive)",
    )


def _load_tiny(folder: Path, spec: ArchSpec) -> nn.Module:
    from transformers import AutoModelForCausalLM

    kw = {"experts_implementation": "eager"} if spec.has_experts else {}
    return AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **kw)


@torch.no_grad()
def _prove(p: _Probe, spec: ArchSpec, tmp: Path) -> tuple[float, str]:
    """Fold a random basis into the saved tiny checkpoint through ``spec`` with the streaming editor; return the
    relative max |Δlogit| against the tiny model with projection hooks, and where it first deviates."""
    from aru.checkpoint import edit_checkpoint
    from aru.directions import Directions
    from aru.model_edit import make_plan, projection_hooks

    directions = Directions({"all": p.q}, p.d)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        edit_checkpoint(tmp / "in", directions, tmp / "out", spec=spec, progress=False)
        edited = _load_tiny(tmp / "out", spec).eval()
    plan = make_plan(directions, len(p.layers))
    with projection_hooks(p.model, plan, spec=spec):
        ref = p.model(p.ids, output_hidden_states=True)
    got = edited(p.ids, output_hidden_states=True)
    scale = float(ref.logits.abs().max()) or 1.0
    dev = float((got.logits - ref.logits).abs().max()) / scale
    where = ""
    if dev > EXACT_RTOL and ref.hidden_states is not None and got.hidden_states is not None:
        for i, (a, b) in enumerate(zip(ref.hidden_states, got.hidden_states, strict=False)):
            if float((a - b).abs().max()) > EXACT_RTOL * (float(a.abs().max()) or 1.0):
                where = "the embeddings" if i == 0 else f"decoder layer {i - 1}"
                break
    return dev, where


def _derive(model_type: str, config, key: str) -> tuple[ArchSpec | None, Proof]:
    model = build_tiny(config)
    p = _probe(model)
    _, writers, postnorms, pos = _select(p)
    mem = _mem_writers(p, writers, pos)
    postnorm = _postnorm_roles(p, writers, postnorms)
    offset = 0.0
    if postnorms:
        norm = next(iter(postnorms.values()))[0]
        offset = _norm_offset(model.get_submodule(norm), _first_tensor(p.captured.inputs[norm][0]))
    head = model.get_output_embeddings()
    with tempfile.TemporaryDirectory(prefix="aru-derive-") as tmp:
        tmp = Path(tmp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.save_pretrained(tmp / "in")
        names = [n for n, *_ in mem]
        lm_head = "lm_head.weight"
        tied = head is not None and head.weight is model.get_input_embeddings().weight
        mem_head = next((f"{n}.weight" for n, m in model.named_modules() if m is head), None) if head else None
        if mem_head is not None and not tied:
            names.append(mem_head)
        disk = _disk_names(model, tmp / "in", names)
        if mem_head is not None:
            lm_head = mem_head if tied else next((k for k, _ in disk.get(mem_head, [])), mem_head)
        missing = [n for n in names if not disk.get(n)]
        if missing:
            raise DerivationError(f"writer tensors {missing[:3]} are not found in the saved checkpoint")
        spec = _assemble(p, mem, disk, postnorm, offset, lm_head)
        dev, where = _prove(p, spec, tmp)
    kinds = sorted({re.sub(r"\.\d+\.", ".{i}.", n, count=1) for n, *_ in mem})
    hooked = {n for v in writers.values() for n in v} | {n for v in postnorms.values() for n in v}
    leak = p.layer_leaks(hooked | {p.embed, *pos})
    common = {"model_type": model_type, "deviation": dev, "leak": max(leak), "key": key, "writers": kinds}
    common["transformers"] = _transformers_version()
    if spec.postnorm:
        norms = ", ".join(sorted(spec.postnorm.values()))
        reason = f"post-norm blocks ({norms}) after the writers: the fold is approximate"
        return spec, Proof(verdict="approximate", reason=reason, **common)
    if dev > EXACT_RTOL:
        raise DerivationError(
            f"the fold through the derived writers differs from the projection hooks by {dev:.2g} (relative), "
            f"first at {where or 'the logits'}; writers found: {', '.join(kinds)}"
        )
    return spec, Proof(verdict="exact", **common)


def cache_dir() -> Path:
    return Path(os.environ.get("ARU_CACHE_DIR") or Path.home() / ".cache" / "aru") / "arch"


def _spec_to_dict(spec: ArchSpec) -> dict:
    return {
        "model_type": spec.model_type,
        "writers": [[w.pattern, w.layout, w.role] for w in spec.writers],
        "lm_head": spec.lm_head,
        "postnorm": dict(spec.postnorm),
        "norm_offset": spec.norm_offset,
        "notes": spec.notes,
    }


def _spec_from_dict(d: dict) -> ArchSpec:
    writers = tuple(Writer(*w) for w in d["writers"])
    return ArchSpec(d["model_type"], writers, d["lm_head"], dict(d["postnorm"]), d["norm_offset"], d["notes"])


def derive_spec(
    model_type: str, config=None, *, cache: bool = True, max_layers: int | None = None
) -> tuple[ArchSpec | None, Proof]:
    """(spec or None, proof) for ``model_type`` with ``config`` (a config object or config.json dict; default:
    the config class's defaults). The spec is None when the verdict is ``refused``; see the module docstring.
    ``max_layers`` (tests, coverage tables) proves on fewer layers; edits always prove on all of them."""
    cfg, shrunk = tiny_config(model_type, config, max_layers)
    raw_key = f"{model_type}\n{signature(shrunk)}\n{_transformers_version()}\n{DERIVE_VERSION}"
    key = hashlib.sha256(raw_key.encode()).hexdigest()[:20]
    if cache and key in _MEMORY:
        return _MEMORY[key]
    path = cache_dir() / f"{model_type}-{key}.json"
    if cache and path.is_file():
        try:
            data = json.loads(path.read_text())
            spec = _spec_from_dict(data["spec"]) if data.get("spec") else None
            result = (spec, Proof(**data["proof"]))
            _MEMORY[key] = result
            return result
        except (OSError, json.JSONDecodeError, KeyError, TypeError):
            pass  # a damaged cache entry is derived again
    start = time.perf_counter()
    try:
        spec, proof = _derive(model_type, cfg, key)
    except DerivationError as exc:
        spec, proof = None, Proof(model_type, "refused", reason=str(exc), key=key)
    except Exception as exc:  # transformers raises many types when a tiny copy cannot be built or run
        reason = f"aru could not build or run a tiny copy of this config ({type(exc).__name__}: {exc})"
        spec, proof = None, Proof(model_type, "refused", reason=reason[:600], key=key)
    proof.transformers = _transformers_version()
    proof.seconds = round(time.perf_counter() - start, 2)
    _MEMORY[key] = (spec, proof)
    if cache:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"spec": spec and _spec_to_dict(spec), "proof": proof.to_dict()}, indent=1))
            tmp.replace(path)
    return spec, proof


def resolve_spec(model_type: str, config=None) -> tuple[ArchSpec, dict]:
    """(spec, provenance): the table's spec for a known model_type, else a derived and proven one.

    Raises :class:`UnsupportedArchitectureError` with the derivation's reason when it is refused."""
    from aru.arch import SPECS

    if model_type in SPECS:
        return SPECS[model_type], {"source": "table", "model_type": model_type}
    spec, proof = derive_spec(model_type, config)
    if spec is None:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not in aru's table and its derivation was refused: {proof.reason}"
        )
    return spec, {"source": "derived", **proof.to_dict()}
