"""Load an aru adapter with PEFT (the ``peft`` extra: ``pip install 'aru[peft]'``), strictly.

:func:`load_with_adapter` loads the base in float32 and attaches the adapter with PEFT's own loader, then checks
that every tensor of the adapter file found its place (PEFT itself only warns). With ``merge=True`` the adapter is
merged (``merge_and_unload``); a tied base is untied first, so that the merged model keeps the adapter's semantics
(the output head keeps the original matrix) instead of projecting the shared matrix.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from aru.errors import CheckpointError
from aru.lora import ADAPTER_WEIGHTS, PREFIX

PEFT_HINT = "install PEFT with: pip install 'aru[peft]'  (peft>=0.14)"


def require_peft():
    """The ``peft`` module; a clear error naming the install command when it is missing or too old."""
    try:
        import peft
    except ImportError:
        raise CheckpointError(f"loading an adapter needs PEFT: {PEFT_HINT}") from None
    from packaging.version import Version

    if Version(peft.__version__) < Version("0.14"):
        raise CheckpointError(f"PEFT {peft.__version__} is too old for lora_bias adapters: {PEFT_HINT}")
    return peft


def untie_(model) -> bool:
    """Give a tied output head its own copy of the matrix (in place); returns whether it was tied."""
    from aru.model_edit import is_tied

    if not is_tied(model):
        return False
    head = model.get_output_embeddings()
    head.weight = torch.nn.Parameter(head.weight.detach().clone())
    model.config.tie_word_embeddings = False
    return True


def attach_adapter(model, adapter: str | Path, *, merge: bool = False):
    """``model`` (a transformers model, modified) with the adapter at ``adapter`` attached, or merged into it.

    Raises :class:`CheckpointError` when a tensor of the adapter file is not used by PEFT or a LoRA weight
    of a target is missing from it (both mean the adapter does not fit this base)."""
    peft = require_peft()
    from safetensors.torch import load_file

    adapter = Path(adapter)
    if merge:
        untie_(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about tied targets and fan_in_fan_out; both are handled here
        config = peft.PeftConfig.from_pretrained(adapter)
        config.inference_mode = True
        wrapped = peft.get_peft_model(model, config)
        state = load_file(adapter / ADAPTER_WEIGHTS)
        result = peft.set_peft_model_state_dict(wrapped, state)
    unexpected = list(result.unexpected_keys)
    missing = [k for k in result.missing_keys if ".lora_" in k or "modules_to_save" in k]
    if unexpected or missing:
        raise CheckpointError(
            f"the adapter {str(adapter)!r} does not fit this base model: unused tensors {unexpected[:3]}, "
            f"missing LoRA weights {missing[:3]}; export it from this base with aru edit --format peft"
        )
    used = {k for k in state if k.startswith(PREFIX)}
    assert used == set(state), sorted(set(state) - used)[:3]
    wrapped.eval()
    if merge:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return wrapped.merge_and_unload()
    return wrapped


def load_with_adapter(base: str | Path, adapter: str | Path, *, merge: bool = False):
    """The base checkpoint folder in float32 with the adapter attached (a PeftModel) or merged (a plain model)."""
    from aru.checkpoint import load_config
    from aru.verify import load_float32

    _, model_type, _, _ = load_config(Path(base))
    return attach_adapter(load_float32(base, model_type), adapter, merge=merge)


def expected_keys(model, config: dict) -> tuple[dict[str, tuple[int, ...]], str]:
    """(saved key → shape, peft version): the tensors PEFT creates and saves for ``config`` on ``model``
    (a meta-device model, modified)."""
    peft = require_peft()
    known = set(peft.LoraConfig.__dataclass_fields__)
    kwargs = {k: v for k, v in config.items() if k in known and k not in ("peft_type", "revision")}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(model, peft.LoraConfig(**kwargs))
        # without the base embedding matrix PEFT adds when an embedding is targeted: the adapter never changes it
        state = peft.get_peft_model_state_dict(wrapped, save_embedding_layers=False)
    return {k: tuple(v.shape) for k, v in state.items()}, peft.__version__


def cross_check(model, config: dict, ours: dict[str, tuple[int, ...]]) -> str:
    """Refuse an adapter PEFT would not load exactly: its keys and shapes (``ours``) must be the ones PEFT itself
    creates from ``config`` on ``model`` (a meta-device model, modified). Returns the PEFT version."""
    expected, version = expected_keys(model, config)
    unused = sorted(set(ours) - set(expected))
    missing = sorted(set(expected) - set(ours))
    wrong = sorted(n for n in set(ours) & set(expected) if tuple(expected[n]) != ours[n])
    if unused or missing or wrong:
        names = [n.removeprefix(PREFIX) for n in (unused + missing + wrong)[:4]]
        raise CheckpointError(
            f"PEFT {version} would not load this adapter exactly: it does not create {len(unused)} of its tensors, "
            f"expects {len(missing)} more and {len(wrong)} with another shape (e.g. {', '.join(names)}). "
            "This is a limitation of PEFT for this architecture; "
            "export a checkpoint instead (aru edit without --format peft)"
        )
    return version
