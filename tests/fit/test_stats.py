import pytest
import torch

from aru.stats import StreamingStats, pooled


def _batches(x, sizes):
    out, s = [], 0
    for n in sizes:
        out.append(x[s : s + n])
        s += n
    return out


@pytest.mark.parametrize("sizes", [[100], [1] * 100, [7, 50, 1, 42], [33, 33, 34]])
def test_streaming_equals_batch_float64(sizes):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(100, 6, generator=g, dtype=torch.float64) * 3 + torch.arange(6.0, dtype=torch.float64)
    s = StreamingStats(6)
    for b in _batches(x, sizes):
        s.update(b)
    assert s.count == 100
    torch.testing.assert_close(s.mean, x.mean(0), rtol=0, atol=1e-12)
    cov = torch.cov(x.T, correction=0)
    torch.testing.assert_close(s.covariance(), cov, rtol=0, atol=1e-12)
    torch.testing.assert_close(s.covariance(ddof=1), torch.cov(x.T), rtol=0, atol=1e-12)
    torch.testing.assert_close(s.second_moment(), x.T @ x / 100, rtol=0, atol=1e-12)


def test_float32_input_accumulates_in_float64():
    x = torch.randn(50, 4) + 1000.0  # large offset: float32 sums would lose digits
    s = StreamingStats(4)
    for b in x.split(5):
        s.update(b)
    x64 = x.double()
    assert s.mean.dtype == torch.float64
    torch.testing.assert_close(s.covariance(), torch.cov(x64.T, correction=0), rtol=0, atol=1e-9)


def test_merge_and_pooled():
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randn(20, 5, dtype=torch.float64) + 2
    both = torch.cat([x, y])
    p = pooled(StreamingStats.of(x), StreamingStats.of(y))
    torch.testing.assert_close(p.mean, both.mean(0))
    torch.testing.assert_close(p.covariance(), torch.cov(both.T, correction=0))
    a = StreamingStats.of(x)
    a_mean = a.mean.clone()
    pooled(a, StreamingStats.of(y))
    torch.testing.assert_close(a.mean, a_mean)  # pooled does not modify its inputs


def test_mean_only_and_bad_shapes():
    s = StreamingStats(3, moments=False).update(torch.ones(4, 3))
    torch.testing.assert_close(s.mean, torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="means only"):
        s.covariance()
    with pytest.raises(ValueError, match=r"\(n, 3\)"):
        s.update(torch.ones(4, 2))
