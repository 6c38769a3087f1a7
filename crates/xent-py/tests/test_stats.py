"""Issue 28 in xent.torch and the numpy API: ``logit_scale``, ``num_items_in_batch`` and
``return_stats``, live against torch: the per-row outputs against ``torch.logsumexp``,
``−(p·log p).sum`` and ``torch.argmax`` of ``softcap(s·x)``, the losses and gradients
against ``F.cross_entropy`` on the scaled, soft-capped logits."""

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent
import xent.torch as xt
from conftest import DTYPES
from test_torch import REDUCTIONS, both, rows_of

# The stats are computed with f32 accumulation for f32/bf16/f16 logits and f64 for
# f64, from the logits as given: against the f64 reference on the same (rounded)
# logits they are off by a few f32 roundings of values of size max(|lse|, 1), for
# every input dtype.
STATS_TOL = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 1e-5,
             torch.float16: 1e-5}


def capped(x, softcap, scale):
    """The logits as the loss sees them: softcap(s·x), scale first."""
    x = x * scale
    return x if softcap is None else softcap * torch.tanh(x / softcap)


def torch_loss(x, y, w, ignore_index, reduction, ls, z_loss, softcap, scale, n=None):
    """F.cross_entropy of softcap(s·x) plus the z term, composed here from torch ops;
    with ``n`` the summed loss over n (Hugging Face's num_items_in_batch)."""
    xc = capped(x, softcap, scale)
    red = "sum" if n is not None else reduction
    loss = F.cross_entropy(xc, y, w, ignore_index=ignore_index, reduction=red,
                           label_smoothing=ls)
    if z_loss:
        keep = (y != ignore_index).to(xc.dtype)
        z = z_loss * torch.logsumexp(xc, dim=1 if xc.dim() > 1 else 0).pow(2) * keep
        loss = loss + (z if red == "none" else z.sum() if red == "sum" else z.sum() / keep.sum())
    return loss if n is None else loss / n


def check_stats(stats, x, y, ignore_index, z_loss, softcap, scale, dtype, what):
    """``stats`` against torch's logsumexp, entropy and argmax of softcap(s·x) in f64,
    ``x`` the logits as the call saw them."""
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    xc = capped(x.detach().double(), softcap, scale)
    dim = 1 if xc.dim() > 1 else 0
    lse = torch.logsumexp(xc, dim=dim)
    p = torch.softmax(xc, dim=dim)
    entropy = -(p * torch.log_softmax(xc, dim=dim)).sum(dim=dim)
    z = z_loss * lse.pow(2) * (y != ignore_index).double()
    assert isinstance(stats, xt.RowStats) and stats._fields == ("lse", "entropy", "argmax", "z")
    for name, got, want in zip(("lse", "entropy", "z"), (stats.lse, stats.entropy, stats.z),
                               (lse, entropy, z)):
        assert got.dtype == acc and got.shape == lse.shape, (what, name, got.dtype, got.shape)
        assert not got.requires_grad, (what, name)
        bound = STATS_TOL[dtype] * torch.clamp(lse.abs(), min=1.0) * (1 + 2 * z_loss * lse.abs())
        err = (got.double() - want).abs()
        assert bool((err <= bound).all()), (what, name, err.max().item())
    am = stats.argmax
    assert am.dtype == torch.int64 and am.shape == lse.shape, (what, am.dtype, am.shape)
    want_am = torch.argmax(xc, dim=dim)
    if dtype == torch.float64:
        assert torch.equal(am, want_am), what
    else:  # the f32 scale/tanh may reorder logits within an f32 rounding
        top = xc.gather(dim, am.unsqueeze(dim)).squeeze(dim)
        assert bool((top >= xc.amax(dim=dim) - 1e-5 * xc.abs().amax()).all()), what


OPTIONS = list(itertools.product([False, True], [-100, 1], [0.0, 0.1], [0.0, 1e-2],
                                 [None, 4.0], [1.0, 0.5, 2.5]))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(7,), (6, 7), (3, 5, 4)])
def test_stats_loss_and_grad_match_torch(dtype, shape, gen):
    c = shape[0] if len(shape) == 1 else shape[1]
    for i, (weighted, ignore, ls, z_loss, softcap, scale) in enumerate(OPTIONS):
        reduction = REDUCTIONS[i % 3]
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
        y = torch.randint(0, c, rows_of(shape), generator=gen)
        if ignore == 1 and y.dim() > 0:
            y.view(-1)[::3] = 1
        w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double() \
            if weighted else None
        kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=ls)
        ext = dict(z_loss=z_loss, softcap=softcap, logit_scale=scale)
        what = f"{dtype} {shape} {kw} {ext} w={weighted}"
        both(lambda a: xt.cross_entropy(a, y, None if w is None else w.to(dtype), **kw, **ext),
             lambda a: torch_loss(a, y, w, ignore, reduction, ls, z_loss, softcap, scale),
             [x], dtype, reduction, gen, what)
        xd = x.to(dtype).requires_grad_()
        loss, stats = xt.cross_entropy(xd, y, None if w is None else w.to(dtype), **kw, **ext,
                                       return_stats=True)
        assert loss.requires_grad
        plain = xt.cross_entropy(xd.detach(), y, None if w is None else w.to(dtype), **kw,
                                 **ext)
        # the stats change nothing
        torch.testing.assert_close(loss.detach(), plain, rtol=0, atol=0, equal_nan=True)
        check_stats(stats, xd, y, ignore, z_loss, softcap, scale, dtype, what)


def test_ties_go_to_the_lowest_index_and_ignored_rows_keep_their_stats():
    x = torch.tensor([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [0.0, -1.0, 5.0, 5.0]])
    y = torch.tensor([0, -100, 3])
    _, st = xt.cross_entropy(x, y, z_loss=0.1, logit_scale=2.0, return_stats=True)
    assert st.argmax.tolist() == torch.argmax(x, dim=1).tolist() == [1, 0, 2]
    assert st.z[1] == 0 and st.z[0] > 0 and st.z[2] > 0
    assert abs(st.lse[1].item() - (4.0 + np.log(4.0))) < 1e-6  # ignored, still computed
    assert abs(st.entropy[1].item() - np.log(4.0)) < 1e-6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("lead", [(), (10,), (3, 4)])
def test_linear_stats_scale_and_num_items_match_torch(dtype, lead, gen):
    d, v = 16, 23
    for i, (bias, ignore, z_loss, softcap, scale) in enumerate(itertools.product(
            [False, True], [None, 2], [0.0, 1e-2], [None, 3.0], [1.0, 0.7])):
        reduction = REDUCTIONS[i % 3]
        n = 7.0 if (reduction == "mean" and i % 2) else None
        h = torch.randn(lead + (d,), generator=gen, dtype=torch.float64)
        w = torch.randn(v, d, generator=gen, dtype=torch.float64) * 0.3
        b = torch.randn(v, generator=gen, dtype=torch.float64) if bias else None
        y = torch.randint(0, v, lead, generator=gen)
        if ignore is not None and y.dim() > 0:
            y.view(-1)[::4] = ignore
        ii = -100 if ignore is None else ignore
        ext = dict(z_loss=z_loss, softcap=softcap, logit_scale=scale, num_items_in_batch=n)
        tensors = [h, w] + ([b] if bias else [])

        def mine(a, bw, *bb):
            return xt.linear_cross_entropy(a, bw, y, linear_bias=bb[0] if bb else None,
                                           reduction=reduction, ignore_index=ignore, **ext)

        def ref(a, bw, *bb):
            logits = F.linear(a, bw, bb[0] if bb else None)
            logits = logits.movedim(-1, 1) if logits.dim() > 2 else logits
            return torch_loss(logits, y, None, ii, reduction, 0.0, z_loss, softcap, scale, n)

        what = f"linear {dtype} {lead} {reduction} {ext} bias={bias}"
        both(mine, ref, tensors, dtype, reduction, gen, what)
        hd, wd = h.to(dtype), w.to(dtype)
        bd = None if b is None else b.to(dtype)
        _, st = xt.linear_cross_entropy(hd, wd, y, linear_bias=bd, reduction=reduction,
                                        ignore_index=ignore, return_stats=True, **ext)
        logits = F.linear(hd.double(), wd.double(), None if bd is None else bd.double())
        logits = logits.movedim(-1, 1) if logits.dim() > 2 else logits
        check_stats(st, logits, y, ii, z_loss, softcap, scale, dtype, what)


@pytest.mark.parametrize("dtype", DTYPES)
def test_num_items_in_batch_is_the_sum_over_n(dtype, gen):
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, 6, (9,), generator=gen)
    y[::4] = -100
    cw = (torch.rand(6, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double()
    for n, w, ls in itertools.product([3, 20.5, torch.tensor(40)], [None, cw], [0.0, 0.2]):
        nf = float(n)
        what = f"{dtype} n={n} w={w is not None} ls={ls}"
        both(lambda a: xt.cross_entropy(a, y, None if w is None else w.to(dtype),
                                        label_smoothing=ls, num_items_in_batch=n),
             lambda a: F.cross_entropy(a, y, w, reduction="sum", label_smoothing=ls) / nf,
             [x], dtype, "mean", gen, what)
        lp = torch.log_softmax(x, dim=1)
        both(lambda a: xt.nll_loss(a, y, None if w is None else w.to(dtype),
                                   num_items_in_batch=n),
             lambda a: F.nll_loss(a, y, w, reduction="sum") / nf,
             [lp], dtype, "mean", gen, "nll " + what)


def test_an_all_ignored_batch_gives_zero_with_num_items_and_nan_without():
    x = torch.randn(4, 5, requires_grad=True)
    y = torch.full((4,), -100)
    assert torch.isnan(xt.cross_entropy(x, y)) and torch.isnan(F.cross_entropy(x, y))
    loss = xt.cross_entropy(x, y, num_items_in_batch=12, z_loss=1e-3)
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(x.grad) == 0
    assert xt.nll_loss(x.detach(), y, num_items_in_batch=3).item() == 0.0
    h = torch.randn(4, 3, requires_grad=True)
    lin = xt.linear_cross_entropy(h, torch.randn(5, 3), y, num_items_in_batch=2)
    lin.backward()
    assert lin.item() == 0.0 and torch.count_nonzero(h.grad) == 0


def test_gradcheck_with_scale_softcap_z_loss_and_num_items(gen):
    x = torch.randn(5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 3, -100, 6, 2])
    for reduction, n in (("mean", None), ("mean", 9), ("sum", None), ("none", None)):
        fn = lambda a: xt.cross_entropy(a, y, reduction=reduction, label_smoothing=0.1,  # noqa
                                        z_loss=1e-2, softcap=3.0, logit_scale=1.7,
                                        num_items_in_batch=n)
        assert torch.autograd.gradcheck(fn, (x,)), (reduction, n)
        assert torch.autograd.gradgradcheck(fn, (x,)), (reduction, n)
    h = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    yl = torch.tensor([1, 5, -100, 0])
    assert torch.autograd.gradcheck(
        lambda a, b: xt.linear_cross_entropy(a, b, yl, logit_scale=0.6, softcap=2.0,
                                             num_items_in_batch=5), (h, w))


def test_the_fallback_path_honours_the_new_options(gen):
    # probability targets that require grad go to torch's function: same values and
    # stats, same errors
    x = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    t = torch.softmax(torch.randn(6, 5, generator=gen, dtype=torch.float64), dim=1)
    w = torch.rand(5, generator=gen, dtype=torch.float64) + 0.5
    kw = dict(z_loss=1e-2, softcap=3.0, logit_scale=1.5, num_items_in_batch=11)
    xt._warned.clear()  # the warning is shown once per process
    want, want_st = xt.cross_entropy(x, t, w, return_stats=True, **kw)
    with pytest.warns(RuntimeWarning, match="probability targets"):
        got, st = xt.cross_entropy(x, t.clone().requires_grad_(), w, return_stats=True, **kw)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
    for a, b in zip(st, want_st):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="-2"):
        xt.cross_entropy(x, t.clone().requires_grad_(), logit_scale=-2.0)
    with pytest.raises(ValueError, match="denominator"):
        xt.cross_entropy(x, t.clone().requires_grad_(), num_items_in_batch=5, reduction="sum")


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("inf"), float("nan")])
def test_bad_scale_or_denominator_raise_value_error(bad):
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    h, w = torch.randn(3, 2), torch.randn(4, 2)
    for call in (lambda **k: xt.cross_entropy(x, y, **k),
                 lambda **k: xt.linear_cross_entropy(h, w, y, **k),
                 lambda **k: xent.cross_entropy(x.numpy(), y.numpy(), **k)):
        with pytest.raises(ValueError, match="logit_scale"):
            call(logit_scale=bad)
        with pytest.raises(ValueError, match="denominator|num_items"):
            call(num_items_in_batch=bad)
    with pytest.raises(ValueError, match="denominator|num_items"):
        xt.nll_loss(torch.log_softmax(x, 1), y, num_items_in_batch=bad)


def test_num_items_with_sum_or_none_and_non_numbers_raise():
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    for reduction in ("sum", "none"):
        with pytest.raises(ValueError, match="denominator|num_items"):
            xt.cross_entropy(x, y, reduction=reduction, num_items_in_batch=3)
        with pytest.raises(ValueError, match="denominator|num_items"):
            xt.nll_loss(x, y, reduction=reduction, num_items_in_batch=3)
    with pytest.raises(TypeError, match="logit_scale"):
        xt.cross_entropy(x, y, logit_scale="2")
    with pytest.raises(TypeError, match="num_items_in_batch"):
        xt.cross_entropy(x, y, num_items_in_batch=True)


def test_numpy_api_returns_stats_and_divides_by_num_items(gen):
    x = torch.randn(2, 7, 3, generator=gen, dtype=torch.float64) * 2
    y = torch.randint(0, 7, (2, 3), generator=gen)
    y[0, 1] = -100
    kw = dict(z_loss=1e-2, softcap=4.0, logit_scale=0.8)
    for dt in (np.float32, np.float64):
        xn = x.numpy().astype(dt)
        loss, g, st = xent.cross_entropy(xn, y.numpy(), num_items_in_batch=10, grad=True,
                                         return_stats=True, **kw)
        xr = torch.from_numpy(xn).double().requires_grad_()
        want = torch_loss(xr, y, None, -100, "mean", 0.0, 1e-2, 4.0, 0.8, n=10)
        want.backward()
        tol = 1e-12 if dt == np.float64 else 2e-6
        assert abs(float(loss) - want.item()) <= tol * max(1.0, abs(want.item()))
        assert np.abs(g - xr.grad.numpy()).max() <= tol * np.abs(xr.grad.numpy()).max()
        assert isinstance(st, xent.RowStats) and st.lse.dtype == np.dtype(dt)
        tst = xt.RowStats(*(torch.from_numpy(np.asarray(a)) for a in st))
        check_stats(tst, torch.from_numpy(xn), y, -100, 1e-2, 4.0, 0.8,
                    torch.float64 if dt == np.float64 else torch.float32, f"numpy {dt}")
        loss2, st2 = xent.cross_entropy(xn, y.numpy(), reduction="none", return_stats=True)
        assert loss2.shape == st2.entropy.shape == st2.argmax.shape == (2, 3)
    h, w = np.random.default_rng(0).standard_normal((2, 5, 4)), np.ones((6, 4))
    loss, grads, st = xent.linear_cross_entropy(h, w, np.zeros((2, 5), np.int64), grad=True,
                                                return_stats=True, num_items_in_batch=20)
    assert st.lse.shape == (2, 5) and np.allclose(st.lse, np.log(6.0) + h.sum(-1))
    assert np.allclose(st.entropy, np.log(6.0)) and (st.argmax == 0).all()
    assert abs(float(loss) - 10 * np.log(6.0) / 20) < 1e-12 and len(grads) == 3
    assert abs(float(xent.nll_loss(np.log(np.full((2, 4), 0.25)), np.array([1, -100]),
                                   num_items_in_batch=4)) - np.log(4.0) / 4) < 1e-12
