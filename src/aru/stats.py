"""Streaming first and second moments of activations, in float64.

:class:`StreamingStats` keeps, for samples x ∈ R^d seen so far,

- ``count`` n,
- ``mean`` μ = (1/n) Σ x,                                 (d,)
- ``m2`` M = Σ (x − μ)(x − μ)ᵀ (the scatter matrix),       (d, d), only when ``moments=True``

updated batch by batch with Chan et al.'s pairwise merge (a Welford update for a whole batch):
for a batch B with n_B, μ_B, M_B and δ = μ_B − μ,

    μ ← μ + δ · n_B / (n + n_B)
    M ← M + M_B + δ δᵀ · n n_B / (n + n_B)
    n ← n + n_B

From these: ``covariance`` C = M / n (population, ddof=0) and ``second_moment`` S = E[x xᵀ] = C + μ μᵀ.
Memory is 8·d² bytes per instance when ``moments=True`` (e.g. 32 MiB at d = 2048, 512 MiB at d = 8192).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class StreamingStats:
    """Running count, mean and scatter matrix of d-dimensional samples, in float64."""

    dim: int
    moments: bool = True
    count: int = 0
    mean: torch.Tensor | None = None  # (d,) float64
    m2: torch.Tensor | None = None  # (d, d) float64

    def __post_init__(self) -> None:
        if self.mean is None:
            self.mean = torch.zeros(self.dim, dtype=torch.float64)
        if self.moments and self.m2 is None:
            self.m2 = torch.zeros(self.dim, self.dim, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> StreamingStats:
        """Add the rows of ``x`` (n, d) (any float dtype and device; accumulated in float64 on x's device)."""
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"expected samples of shape (n, {self.dim}), got {tuple(x.shape)}")
        nb = x.shape[0]
        if nb == 0:
            return self
        x = x.to(torch.float64)
        mb = x.mean(0)
        self.mean = self.mean.to(x.device)
        if self.moments:
            xc = x - mb
            self._merge(nb, mb, xc.T @ xc)
        else:
            self._merge(nb, mb, None)
        return self

    def merge(self, other: StreamingStats) -> StreamingStats:
        """Add another accumulator's samples (the result equals one accumulator fed both sample sets)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge statistics of dimension {other.dim} into {self.dim}")
        if other.count == 0:
            return self
        self.mean = self.mean.to(other.mean.device)
        self._merge(other.count, other.mean, other.m2 if self.moments else None)
        return self

    def _merge(self, nb: int, mb: torch.Tensor, m2b: torch.Tensor | None) -> None:
        n = self.count
        tot = n + nb
        delta = mb - self.mean
        self.mean = self.mean + delta * (nb / tot)
        if self.moments:
            if m2b is None:
                raise ValueError("cannot merge mean-only statistics into statistics with second moments")
            self.m2 = self.m2.to(mb.device) + m2b + torch.outer(delta, delta) * (n * nb / tot)
        self.count = tot

    def _need_moments(self) -> None:
        if not self.moments:
            raise ValueError("these statistics hold means only; capture with moments=True for covariances")
        if self.count == 0:
            raise ValueError("no samples have been accumulated")

    def covariance(self, ddof: int = 0) -> torch.Tensor:
        """C = M / (n − ddof), (d, d) float64 (population covariance by default)."""
        self._need_moments()
        return self.m2 / (self.count - ddof)

    def second_moment(self) -> torch.Tensor:
        """S = E[x xᵀ] = M / n + μ μᵀ, (d, d) float64 (uncentred)."""
        self._need_moments()
        return self.m2 / self.count + torch.outer(self.mean, self.mean)

    def to(self, device) -> StreamingStats:
        """A copy on ``device``."""
        return StreamingStats(
            self.dim,
            self.moments,
            self.count,
            self.mean.to(device),
            None if self.m2 is None else self.m2.to(device),
        )

    @classmethod
    def of(cls, x: torch.Tensor, moments: bool = True) -> StreamingStats:
        """Statistics of all rows of ``x`` (n, d) at once."""
        return cls(x.shape[1], moments).update(x)


def pooled(a: StreamingStats, b: StreamingStats) -> StreamingStats:
    """Statistics of the union of two sample sets."""
    out = a.to(a.mean.device)
    return out.merge(b)
