"""Pure tensor functions that fold a projection into the weights writing into the residual stream.

With an orthonormal basis Q, (k, d), and a strength λ, the fold applies

    P_λ = I − λ QᵀQ          (λ = 1: the orthogonal projection removing span(Q))

to whatever a tensor writes into the residual stream. By layout (see :mod:`aru.arch`):

- d on the second-to-last axis (nn.Linear (d, n), experts (E, d, i)):   W ← W − λ Qᵀ (Q W)
- d on the last axis (embedding (V, d), Conv1D (n, d), experts (E, i, d), biases):  W ← W − λ (W Qᵀ) Q

The math runs in float32 (or float64), never in the checkpoint's dtype; the result is cast back once and
refused if it is not finite. Nothing here forms the dense d×d matrix P.

For post-norm ("sandwich") blocks, y = g ⊙ u / rms(u) with u = W z, :func:`oblique_basis` gives the basis to
fold instead: Q_g = orthonormalize(Q ⊙ g). Folding P = I − Q_gᵀQ_g makes (g ⊙ q)·u = 0, so q·y = 0 exactly
for every q in span(Q); it changes rms(u), hence the per-token scale, so it is still an approximation.
"""

from __future__ import annotations

import torch

from aru.arch import LAYOUT_AXIS, LAYOUT_NDIM
from aru.directions import orthonormalize
from aru.errors import CheckpointError

FLOATS = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
BLOCK = 1 << 23  # elements per folded block (32 MiB in float32)


def fold_tensor(
    w: torch.Tensor,
    q: torch.Tensor,
    layout: str,
    *,
    strength: float = 1.0,
    compute_dtype: torch.dtype = torch.float32,
    name: str = "tensor",
) -> torch.Tensor:
    """Return ``w`` with P_λ folded in along its residual axis (``layout``), in ``w``'s dtype.

    ``w`` (any layout of :data:`aru.arch.LAYOUT_AXIS`), ``q`` (k, d) orthonormal. Raises
    :class:`CheckpointError` for a non-float tensor, a shape that does not fit the layout, or a non-finite
    result (e.g. a bf16 overflow).
    """
    if w.dtype not in FLOATS:
        raise CheckpointError(
            f"{name} has dtype {w.dtype}; aru folds only float tensors (f32/f16/bf16/f64). "
            "Quantized checkpoints must be dequantized first."
        )
    axis = LAYOUT_AXIS[layout]
    d = q.shape[-1]
    if w.ndim != LAYOUT_NDIM[layout] or w.shape[axis] != d:
        raise CheckpointError(
            f"{name} has shape {tuple(w.shape)}, which does not fit layout {layout!r} with hidden size {d} "
            f"on axis {axis}: the checkpoint does not match its config or the architecture table"
        )
    qc = q.to(compute_dtype)
    out = torch.empty_like(w)
    limit = torch.finfo(w.dtype).max
    # fold in blocks of ~BLOCK elements: the float32 temporaries stay small whatever the tensor's size
    if axis == -1:  # (..., d): rows
        src, dst = w.reshape(-1, d), out.view(-1, d)
        step = max(1, BLOCK // d)
        blocks = [(src[i : i + step], dst[i : i + step]) for i in range(0, src.shape[0], step)]
    else:  # (d, n) or (E, d, n): columns
        mats = [(w, out)] if w.ndim == 2 else list(zip(w, out, strict=True))
        step = max(1, BLOCK // d)
        blocks = [(a[:, j : j + step], b[:, j : j + step]) for a, b in mats for j in range(0, a.shape[1], step)]
    for a, b in blocks:
        x = a.to(compute_dtype, copy=True)
        if axis == -1:
            x.addmm_(x @ qc.T, qc, alpha=-strength)
        else:
            x.addmm_(qc.T, qc @ x, alpha=-strength)
        # NaN propagates through amax/amin; inf and overflow of the cast back exceed the dtype's max
        if x.numel() and not (bool(x.amax() <= limit) and bool(x.amin() >= -limit)):
            raise CheckpointError(f"folding into {name} gave non-finite values (dtype {w.dtype}); nothing was written")
        b.copy_(x)
    return out


def oblique_basis(q: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
    """Q_g = orthonormalize(Q ⊙ g), (k, d): the basis to fold before a post-norm with gain ``gain`` (d,)."""
    return orthonormalize(q.double() * gain.double()[None, :]).to(torch.float32)
