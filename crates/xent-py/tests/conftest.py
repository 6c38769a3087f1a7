import pytest
import torch

# Tolerances by dtype, relative to the f64 torch reference: (loss rtol, grad atol as a
# fraction of the largest gradient entry). bf16 keeps 8 bits, f16 11: their losses are
# rounded once to the dtype, their gradients once per entry.
TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (2e-5, 2e-6),
    torch.float16: (2e-3, 1e-3),
    torch.bfloat16: (1e-2, 8e-3),
}

DTYPES = [torch.float32, torch.float64, torch.bfloat16, torch.float16]


def close(got, want, dtype, what=""):
    """got (any dtype) against the f64 reference want."""
    rtol, gtol = TOL[dtype]
    got = got.detach().double()
    want = want.detach().double()
    assert got.shape == want.shape, (what, got.shape, want.shape)
    scale = want.abs().max().item() if want.numel() else 1.0
    err = (got - want).abs()
    bound = rtol * want.abs() + gtol * max(scale, 1e-30) + (1e-300 if dtype == torch.float64 else 0)
    bad = err > bound
    assert not bool(bad.any()), (
        f"{what}: max err {err.max().item():.3e} (bound {bound[bad].min().item():.3e}) "
        f"got {got[bad][:4].tolist()} want {want[bad][:4].tolist()}")


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)
