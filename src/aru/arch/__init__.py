"""Per-architecture knowledge, as data: which tensors write into the residual stream, and how.

One :class:`ArchSpec` per ``model_type``. A :class:`Writer` is a regular expression over full tensor names
(they match both the in-memory parameter names of transformers 5 and the names on disk, which differ for MoE
experts: Mixtral's experts are one fused ``mlp.experts.down_proj`` (E, d, i) in memory but
``block_sparse_moe.experts.{e}.w2.weight`` (d, i) per expert on disk) plus the tensor's layout, which says
on which axis the residual dimension d sits:

======================  ===================  ==========================================================
layout                  shape                fold (Q is (k, d), λ the strength)
======================  ===================  ==========================================================
``out_in``              (d, n)  nn.Linear    W ← W − λ Qᵀ(Q W)
``in_out``              (n, d)  GPT-2 Conv1D W ← W − λ (W Qᵀ) Q
``embed``               (V, d)               E ← E − λ (E Qᵀ) Q
``bias``                (d,)                 b ← b − λ Qᵀ(Q b)
``experts_out_in``      (E, d, i)            each expert as ``out_in``
``experts_in_out``      (E, i, d)            each expert as ``in_out`` (gpt-oss)
``experts_bias``        (E, d)               each row as ``bias``
======================  ===================  ==========================================================

Layouts are declared, never guessed from shapes: a square GPT-2 ``c_proj`` folded on the wrong side fails
silently. :func:`aru.model_edit.fold_into_model` cross-checks fused experts against the experts module's
own ``is_transposed`` flag.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from aru.errors import UnsupportedArchitectureError

# axis of the residual dimension d in a tensor of each layout (negative: counted from the end)
LAYOUT_AXIS = {
    "out_in": -2,
    "experts_out_in": -2,
    "in_out": -1,
    "embed": -1,
    "experts_in_out": -1,
    "experts_bias": -1,
    "bias": -1,
}
LAYOUT_NDIM = {"out_in": 2, "in_out": 2, "embed": 2, "bias": 1, "experts_out_in": 3, "experts_in_out": 3}
LAYOUT_NDIM["experts_bias"] = 2

ROLES = ("embed", "pos_embed", "attn", "mlp")


@dataclass(frozen=True)
class Writer:
    """Tensors matching ``pattern`` (``re.fullmatch`` on the full name) write into the residual stream.

    Named groups: ``block`` (the name prefix up to and including ``layers.{i}.``), ``layer`` (the decoder
    layer index; absent for embeddings). ``role`` is ``embed``/``pos_embed`` (written before layer 0) or
    ``attn``/``mlp`` (written by decoder layer ``layer``).
    """

    pattern: str
    layout: str
    role: str

    def __post_init__(self) -> None:
        assert self.layout in LAYOUT_AXIS, self.layout
        assert self.role in ROLES, self.role
        object.__setattr__(self, "_regex", re.compile(self.pattern))

    def match(self, name: str) -> re.Match | None:
        return self._regex.fullmatch(name)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ArchSpec:
    """What aru knows about one ``model_type``.

    ``postnorm`` maps a role (``attn``/``mlp``) to the norm applied to that writer's output *before* it is
    added to the residual (Gemma-2/3 and OLMo-2 "sandwich"/post-norm blocks): folding there is approximate.
    ``norm_offset`` is added to a norm weight to get its gain (Gemma's norms compute x · (1 + w)).
    ``lm_head`` is the output head's tensor name in a checkpoint, used when tied embeddings are untied.
    """

    model_type: str
    writers: tuple[Writer, ...]
    lm_head: str = "lm_head.weight"
    postnorm: dict[str, str] = field(default_factory=dict)
    norm_offset: float = 0.0
    notes: str = ""

    @property
    def has_experts(self) -> bool:
        """Whether the model has MoE expert tensors (fused in memory: transformers' eager kernel handles fp64)."""
        return any(w.layout.startswith("experts") for w in self.writers)

    @property
    def exact(self) -> bool:
        """Whether folding P into the writers reproduces a hooked projection exactly."""
        return not self.postnorm

    def match(self, name: str) -> tuple[Writer, int | None, str] | None:
        """(writer, layer, block prefix) for a writer tensor name, else None."""
        for writer in self.writers:
            m = writer.match(name)
            if m:
                gd = m.groupdict()
                layer = int(gd["layer"]) if gd.get("layer") is not None else None
                return writer, layer, gd.get("block") or ""
        return None

    def postnorm_name(self, writer: Writer, block: str) -> str | None:
        """The name of the norm weight applied to ``writer``'s output, for post-norm families."""
        suffix = self.postnorm.get(writer.role)
        return f"{block}{suffix}.weight" if suffix else None


_ANY = r"(?:.+\.)?"  # any prefix: model., transformer., model.language_model., ...


def _layer(stack: str, rest: str) -> str:
    return rf"(?P<block>{_ANY}{stack}\.(?P<layer>\d+)\.){rest}"


def _w(stack: str, rest: str, layout: str, role: str) -> Writer:
    return Writer(_layer(stack, rest), layout, role)


def _linear(stack: str, module: str, role: str, *, bias: bool = True) -> tuple[Writer, ...]:
    """An nn.Linear writer (and its bias, when the checkpoint has one)."""
    mod = re.escape(module)
    out = (_w(stack, mod + r"\.weight", "out_in", role),)
    return out + ((_w(stack, mod + r"\.bias", "bias", role),) if bias else ())


def _embed(name: str, role: str = "embed") -> Writer:
    return Writer(_ANY + re.escape(name) + r"\.weight", "embed", role)


def _llama_like(model_type: str, **kw) -> ArchSpec:
    writers = (
        _embed("embed_tokens"),
        *_linear("layers", "self_attn.o_proj", "attn"),
        *_linear("layers", "mlp.down_proj", "mlp"),
    )
    return ArchSpec(model_type, writers, **kw)


def _moe_experts(stack: str, *, disk_expert: str, role: str = "mlp") -> tuple[Writer, ...]:
    """Fused experts in memory ((E, d, i), ``mlp.experts.down_proj``) and per-expert tensors on disk."""
    return (
        _w(stack, r"mlp\.experts\.down_proj", "experts_out_in", role),
        _w(stack, disk_expert, "out_in", role),
    )


_SANDWICH = {"attn": "post_attention_layernorm", "mlp": "post_feedforward_layernorm"}

SPECS: dict[str, ArchSpec] = {}


def _register(spec: ArchSpec) -> None:
    SPECS[spec.model_type] = spec


for _mt in ("llama", "mistral", "qwen2", "qwen3", "phi3"):
    _register(_llama_like(_mt))
_register(_llama_like("granite", notes="embedding/residual multipliers are scalars and commute with P"))
_register(_llama_like("gemma", notes="the embedding is scaled by sqrt(d) inside the model; a scalar"))
_register(_llama_like("gemma2", postnorm=_SANDWICH, norm_offset=1.0, notes="sandwich norms after the writers"))
_register(_llama_like("gemma3_text", postnorm=_SANDWICH, norm_offset=1.0, notes="sandwich norms after the writers"))
_register(_llama_like("olmo2", postnorm=_SANDWICH, notes="norms after the writers only"))
_register(
    ArchSpec(
        "phi",
        (_embed("embed_tokens"), *_linear("layers", "self_attn.dense", "attn"), *_linear("layers", "mlp.fc2", "mlp")),
        notes="parallel attention and MLP",
    )
)
_register(
    ArchSpec(
        "gpt2",
        (
            _embed("wte"),
            _embed("wpe", "pos_embed"),
            _w("h", r"attn\.c_proj\.weight", "in_out", "attn"),
            _w("h", r"attn\.c_proj\.bias", "bias", "attn"),
            _w("h", r"mlp\.c_proj\.weight", "in_out", "mlp"),
            _w("h", r"mlp\.c_proj\.bias", "bias", "mlp"),
        ),
        notes="Conv1D weights are (in, out); learned position embeddings (wpe)",
    )
)
_register(
    ArchSpec(
        "gpt_neox",
        (
            _embed("embed_in"),
            *_linear("layers", "attention.dense", "attn"),
            *_linear("layers", "mlp.dense_4h_to_h", "mlp"),
        ),
        lm_head="embed_out.weight",
        notes="the output head is embed_out on disk and lm_head in memory",
    )
)
_register(
    ArchSpec(
        "gptj",
        (_embed("wte"), *_linear("h", "attn.out_proj", "attn"), *_linear("h", "mlp.fc_out", "mlp")),
        notes="parallel attention and MLP",
    )
)
_register(
    ArchSpec(
        "falcon",
        (
            _embed("word_embeddings"),
            *_linear("h", "self_attention.dense", "attn"),
            *_linear("h", "mlp.dense_4h_to_h", "mlp"),
        ),
        notes="biases iff config.bias; parallel or sequential residual",
    )
)
_register(
    ArchSpec(
        "starcoder2",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            *_linear("layers", "mlp.c_proj", "mlp"),
        ),
        notes="mlp.c_proj is an nn.Linear (out, in), unlike GPT-2's Conv1D",
    )
)
_register(
    ArchSpec(
        "mixtral",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            *_moe_experts("layers", disk_expert=r"block_sparse_moe\.experts\.\d+\.w2\.weight"),
        ),
        notes="experts fused (E, d, i) in memory, experts.{e}.w2 per expert on disk",
    )
)
_register(
    ArchSpec(
        "qwen3_moe",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            *_moe_experts("layers", disk_expert=r"mlp\.experts\.\d+\.down_proj\.weight"),
            *_linear("layers", "mlp.down_proj", "mlp"),  # mlp_only_layers
        ),
    )
)
_register(
    ArchSpec(
        "qwen2_moe",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            *_moe_experts("layers", disk_expert=r"mlp\.experts\.\d+\.down_proj\.weight"),
            *_linear("layers", "mlp.shared_expert.down_proj", "mlp"),
            *_linear("layers", "mlp.down_proj", "mlp"),  # mlp_only_layers
        ),
        notes="the shared expert's output is scaled by a sigmoid gate, a scalar per token",
    )
)
_register(
    ArchSpec(
        "deepseek_v3",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            *_moe_experts("layers", disk_expert=r"mlp\.experts\.\d+\.down_proj\.weight"),
            *_linear("layers", "mlp.shared_experts.down_proj", "mlp"),
            *_linear("layers", "mlp.down_proj", "mlp"),  # first_k_dense_replace layers
        ),
        notes="MLA attention writes through o_proj; dense MLP in the first_k_dense_replace layers",
    )
)
_register(
    ArchSpec(
        "gpt_oss",
        (
            _embed("embed_tokens"),
            *_linear("layers", "self_attn.o_proj", "attn"),
            _w("layers", r"mlp\.experts\.down_proj", "experts_in_out", "mlp"),
            _w("layers", r"mlp\.experts\.down_proj_bias", "experts_bias", "mlp"),
        ),
        notes="experts stored (E, i, d), transposed; MXFP4-quantized checkpoints must be dequantized first",
    )
)

SUPPORTED: tuple[str, ...] = tuple(sorted(SPECS))


def get_spec(model_type: str, config=None) -> ArchSpec:
    """The :class:`ArchSpec` of ``model_type``: the table's, else one derived from ``config`` (a config object or
    config.json dict) and proven on a tiny copy (:mod:`aru.arch.derive`). Raises
    :class:`UnsupportedArchitectureError` with the reason when there is none."""
    if model_type in SPECS:
        return SPECS[model_type]
    if config is None:
        raise UnsupportedArchitectureError(
            f"model_type {model_type!r} is not in aru's table ({', '.join(SUPPORTED)}) and no config was given "
            "to derive its writers from"
        )
    from aru.arch.derive import resolve_spec

    return resolve_spec(model_type, config)[0]


def spec_of(model) -> ArchSpec:
    """The :class:`ArchSpec` of a transformers model in memory."""
    return get_spec(model.config.model_type, model.config)


__all__ = ["SPECS", "SUPPORTED", "ArchSpec", "Writer", "get_spec", "spec_of", "LAYOUT_AXIS"]
