"""Exactness: the streamed, folded checkpoint loaded in plain transformers equals the hooked original."""

from __future__ import annotations

import warnings

import pytest
import torch
from conftest import random_basis, save_tiny

from aru.arch import SUPPORTED, get_spec
from aru.checkpoint import edit_checkpoint
from aru.directions import Directions, save_directions
from aru.errors import AruWarning
from aru.model_edit import make_plan, projection_hooks
from aru.verify import load_float32

EXACT_RTOL = 1e-4  # fp32: max |Δlogit| ≤ 1e-4 · max |logit|


@pytest.mark.parametrize("model_type", SUPPORTED)
def test_streamed_edit_equals_hooked_original(model_type, tmp_path):
    src = tmp_path / "in"
    model = save_tiny(model_type, src)
    d = model.config.hidden_size
    q = random_basis(d, k=2)
    dpath = save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")
    spec = get_spec(model_type)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = edit_checkpoint(src, dpath, tmp_path / "out", progress=False)
    approx_warned = any(issubclass(w.category, AruWarning) for w in caught)
    assert approx_warned == (not spec.exact)
    assert result.exact == spec.exact

    ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
    plan = make_plan(Directions({"all": q}, d), model.config.num_hidden_layers)
    with torch.no_grad():
        original = model(ids).logits
        with projection_hooks(model, plan):
            hooked = model(ids).logits
        edited = load_float32(tmp_path / "out", model_type)(ids).logits
    scale = hooked.abs().max()
    # the edit must change the model, or the comparison proves nothing
    assert (hooked - original).abs().max() > 1e-3 * scale
    err = (edited - hooked).abs().max()
    if spec.exact:
        assert err <= EXACT_RTOL * scale, f"{model_type}: max |Δlogit| {err:.3g} vs max |logit| {scale:.3g}"
    else:
        # post-norm families: approximate, flagged; the deviation is reported, and it is far from exact
        assert err > EXACT_RTOL * scale
        assert "approximate" in result.provenance["settings"]["approximate"][0]


def test_oblique_postnorm_removes_the_direction_exactly_after_the_norm(tmp_path):
    """gemma2 with --postnorm oblique: every decoder layer's output has no component along Q."""
    src = tmp_path / "in"
    model = save_tiny("gemma2", src)
    d = model.config.hidden_size
    q = random_basis(d, k=1)
    dpath = save_directions(Directions({"all": q}, d), tmp_path / "d.safetensors")
    leaks = {}
    for mode in ("orthogonal", "oblique"):
        with pytest.warns(AruWarning, match="post-norm"):
            edit_checkpoint(src, dpath, tmp_path / mode, postnorm=mode, progress=False)
        edited = load_float32(tmp_path / mode, "gemma2")
        ids = torch.randint(3, 100, (2, 12), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            hs = edited(ids, output_hidden_states=True).hidden_states
        # hidden_states[i] is the input of layer i; the last one is after the final norm, skip it
        leaks[mode] = max(float(((h @ q.T).norm(dim=-1) / h.norm(dim=-1)).max()) for h in hs[:-1])
    assert leaks["oblique"] < 1e-5
    assert leaks["orthogonal"] > 100 * leaks["oblique"]
