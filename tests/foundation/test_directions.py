"""The directions file format: round trip and validation."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from aru.directions import ALL, Directions, describe, load_directions, orthonormalize, save_directions
from aru.errors import DirectionsError


def basis(k, d, seed=0):
    return orthonormalize(torch.randn(k, d, generator=torch.Generator().manual_seed(seed)))


def test_round_trip_per_layer_with_extras(tmp_path):
    dirs = Directions(
        {0: basis(2, 16), 3: basis(1, 16, 1)},
        16,
        {"method": "pca-omega", "default_layer": "3"},
        {"auroc.layer.3": torch.tensor([0.9])},
    )
    path = save_directions(dirs, tmp_path / "d.safetensors")
    back = load_directions(path)
    assert back.layers == [0, 3] and back.default_layer == 3 and back.hidden_size == 16
    assert torch.equal(back.basis(), dirs.basis(3)) and torch.equal(back.basis(0), dirs.basis(0))
    assert back.metadata["method"] == "pca-omega" and torch.equal(back.extras["auroc.layer.3"], torch.tensor([0.9]))
    single = back.select(0, k=1)
    assert list(single.bases) == [ALL] and single.basis().shape == (1, 16) and single.metadata["source_layer"] == "0"
    assert '"hidden_size": 16' in describe(back)


def test_orthonormalize_keeps_span_and_sign():
    v = torch.randn(3, 10)
    q = orthonormalize(v)
    assert torch.allclose(q @ q.T, torch.eye(3), atol=1e-5)
    assert (q * v).sum(-1).min() > 0  # each row keeps the sign of its own vector
    # span preserved: v is reproduced by its projection on q
    assert torch.allclose(v @ q.T @ q, v, atol=1e-4)


@pytest.mark.parametrize(
    "q, match",
    [
        (torch.randn(2, 16), "not orthonormal"),
        (torch.full((1, 16), float("nan")), "NaN"),
        (basis(2, 8), "dimension 8"),
        (torch.randn(16), "2-D"),
        (basis(16, 16), "k=16"),
    ],
)
def test_invalid_bases_are_refused(q, match):
    with pytest.raises(DirectionsError, match=match):
        Directions({ALL: q}, 16)


def test_mixed_and_missing_keys_are_refused():
    with pytest.raises(DirectionsError, match="not both"):
        Directions({ALL: basis(1, 16), 2: basis(1, 16)}, 16)
    with pytest.raises(DirectionsError, match="no basis"):
        Directions({}, 16)
    with pytest.raises(DirectionsError, match="no default_layer"):
        Directions({1: basis(1, 16), 2: basis(1, 16)}, 16).default_layer  # noqa: B018


def test_load_refuses_foreign_and_corrupt_files(tmp_path):
    with pytest.raises(DirectionsError, match="does not exist"):
        load_directions(tmp_path / "missing.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(DirectionsError, match="not an aru directions file"):
        load_directions(tmp_path / "foreign.safetensors")
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x00" * 5)
    with pytest.raises(DirectionsError, match="not a readable safetensors"):
        load_directions(tmp_path / "corrupt.safetensors")
