"""xent.torch under training code: double backward, the gradient-buffer cache's bounds,
autograd's in-place checks, autocast, target shapes, torch.func, and errors as torch
raises them (issue 31). Each test compares with torch.nn.functional on the same case."""

import gc
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt

f64 = torch.float64


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


# --- double backward --------------------------------------------------------------

def test_double_backward_gradient_penalty_as_torch():
    """The issue's gradient penalty: the gradient taken with create_graph=True carries
    its own graph, and the second-order term reaches x.grad."""
    x0 = torch.randn(4, 5, dtype=f64, generator=_g())
    t = torch.tensor([0, 1, 2, 3])
    got = []
    for f in (xt.cross_entropy, F.cross_entropy):
        x = x0.clone().requires_grad_()
        loss = f(x, t)
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        assert g.requires_grad
        (loss + g.pow(2).sum()).backward()
        got.append(x.grad)
    torch.testing.assert_close(got[0], got[1], rtol=1e-12, atol=1e-14)


def _probs(shape, gen):
    return torch.softmax(torch.randn(shape, dtype=f64, generator=gen), 1)


def _gradcheck_cases():
    """(name, function of the differentiable tensors, those tensors) for every loss and
    the options that change its gradient, small enough for finite differences."""
    g = _g(7)
    x = torch.randn(3, 4, dtype=f64, generator=g)
    y = torch.tensor([0, 3, 1])
    yk = torch.tensor([[0, 2], [3, 3], [1, -100]])
    xk = torch.randn(3, 4, 2, dtype=f64, generator=g)
    w = torch.rand(4, dtype=f64, generator=g) + 0.5
    p = _probs((3, 4), g)
    logp = torch.log_softmax(torch.randn(3, 4, dtype=f64, generator=g), 1)
    u = torch.rand(3, 4, dtype=f64, generator=g) * 0.8 + 0.1
    b = torch.rand(3, 4, dtype=f64, generator=g)
    h = torch.randn(3, 5, dtype=f64, generator=g)
    lw = torch.randn(4, 5, dtype=f64, generator=g) * 0.5
    lb = torch.randn(4, dtype=f64, generator=g)
    cases = []
    for red in ("mean", "sum", "none"):
        cases += [
            (f"ce {red}", lambda a, r=red: xt.cross_entropy(a, y, reduction=r), [x]),
            (f"ce options {red}", lambda a, r=red: xt.cross_entropy(
                a, y, w, ignore_index=1, reduction=r, label_smoothing=0.2), [x]),
            (f"ce z_loss softcap {red}", lambda a, r=red: xt.cross_entropy(
                a, y, reduction=r, z_loss=0.1, softcap=2.0), [x]),
            (f"ce k-dim {red}", lambda a, r=red: xt.cross_entropy(a, yk, w, reduction=r), [xk]),
            (f"ce probs {red}", lambda a, r=red: xt.cross_entropy(
                a, p, w, reduction=r, label_smoothing=0.1), [x]),
            (f"nll {red}", lambda a, r=red: xt.nll_loss(a, y, w, reduction=r), [logp]),
            (f"bce {red}", lambda a, r=red: xt.binary_cross_entropy(a, b, w, reduction=r), [u]),
            (f"bce logits {red}", lambda a, r=red: xt.binary_cross_entropy_with_logits(
                a, b, u, reduction=r, pos_weight=w), [x]),
            (f"kl {red}", lambda a, c, r=red: xt.kl_div(a, c, reduction=r), [logp, p]),
            (f"kl log_target {red}", lambda a, c, r=red: xt.kl_div(
                a, c, reduction=r, log_target=True), [logp, logp.flip(0)]),
            (f"linear {red}", lambda a, c, d, r=red: xt.linear_cross_entropy(
                a, c, y, linear_bias=d, weight=w, reduction=r, label_smoothing=0.1,
                z_loss=0.05), [h, lw, lb]),
        ]
    cases.append(("ce 1-d", lambda a: xt.cross_entropy(a, torch.tensor(2)), [x[0]]))
    return cases


CASES = _gradcheck_cases()


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_gradcheck_and_gradgradcheck(case):
    name, fn, tensors = CASES[case]
    inputs = [t.detach().clone().requires_grad_() for t in tensors]
    assert torch.autograd.gradcheck(fn, inputs), name
    assert torch.autograd.gradgradcheck(fn, inputs), name


def test_hessian_vector_product_as_torch():
    x = torch.randn(6, 7, dtype=f64, generator=_g(3))
    y = torch.randint(0, 7, (6,), generator=_g(4))
    v = torch.randn(6, 7, dtype=f64, generator=_g(5))
    hv = [torch.autograd.functional.hvp(lambda a, f=f: f(a, y, label_smoothing=0.1), x, v)[1]
          for f in (xt.cross_entropy, F.cross_entropy)]
    torch.testing.assert_close(hv[0], hv[1], rtol=1e-10, atol=1e-12)


# --- the gradient-buffer cache ------------------------------------------------------

def _rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) << 10
    raise KeyError("VmRSS")


def test_cache_stays_bounded_with_variable_batch_sizes():
    """The issue's loop (variable-length batches, C = 4096): the cache used to keep 2
    buffers of every size it saw (about 700 MiB here); now its idle buffers stay within
    its limits and the process's memory does not grow with the number of sizes."""
    xt.empty_cache()
    gen = _g(11)
    W = torch.randn(4096, 64, generator=gen, requires_grad=True)
    gc.collect()
    base = _rss()
    for n in range(64, 364, 3):
        W.grad = None
        h = torch.randn(n, 64, generator=gen)
        xt.cross_entropy(h @ W.t(), torch.randint(0, 4096, (n,), generator=gen)).backward()
    gc.collect()
    rise = _rss() - base
    assert rise < 160 << 20, f"RSS rose by {rise >> 20} MiB over 100 batch sizes"
    info = xt.grad_cache_info()
    assert info["buffers"] <= info["max_buffers"] == 2
    assert info["bytes"] <= info["max_bytes"]
    W.grad = None
    xt.empty_cache()


def test_cache_limits_are_configurable_and_memory_goes_back_to_the_os():
    n, c = 1024, 16384  # 64 MiB gradients: their memory is mapped and unmapped
    x = torch.randn(n, c, generator=_g(12)).requires_grad_()
    y = torch.randint(0, c, (n,), generator=_g(13))
    xt.empty_cache()
    prev = xt.set_grad_cache_limit(max_bytes=1 << 30, max_buffers=2)
    try:
        gc.collect()
        base = _rss()
        xt.cross_entropy(x, y).backward()
        assert _rss() - base > 48 << 20  # the gradient
        x.grad = None  # its buffer is idle now, kept for the next step
        gc.collect()
        assert xt.grad_cache_info()["bytes"] == 64 << 20
        assert _rss() - base > 48 << 20
        xt.empty_cache()
        assert _rss() - base < 16 << 20, "empty_cache() gave the memory back"
        # a limit below the buffer's size keeps nothing: freed is given back at once
        xt.set_grad_cache_limit(max_bytes=32 << 20)
        xt.cross_entropy(x, y).backward()
        x.grad = None
        gc.collect()
        assert xt.grad_cache_info() == dict(bytes=0, buffers=0, max_bytes=32 << 20,
                                            max_buffers=2)
        assert _rss() - base < 16 << 20
        # max_buffers=0 disables the cache
        xt.set_grad_cache_limit(max_bytes=1 << 30, max_buffers=0)
        xt.cross_entropy(x, y).backward()
        x.grad = None
        assert xt.grad_cache_info()["buffers"] == 0
        with pytest.raises(ValueError, match="max_bytes"):
            xt.set_grad_cache_limit(max_bytes=-1)
    finally:
        xt.set_grad_cache_limit(*prev)
        xt.empty_cache()


def test_cache_size_from_the_environment():
    code = """
import importlib, os, sys
import xent.torch as xt
i = xt.grad_cache_info()
print(i["max_bytes"], i["max_buffers"])
os.environ["XENT_GRAD_CACHE_BYTES"] = "lots"
try:
    importlib.reload(sys.modules[xt.grad_cache_info.__module__])
except ValueError as e:
    print(e)
"""
    env = dict(os.environ, XENT_GRAD_CACHE_BYTES="12345")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert out[0].split() == ["12345", "2"]
    assert out[1] == "XENT_GRAD_CACHE_BYTES must be a byte count (an integer ≥ 0), got 'lots'"


def test_cache_does_not_read_reference_counts(monkeypatch):
    """CPython 3.14's borrowed references change sys.getrefcount's answer; the cache
    must not depend on it. With getrefcount claiming every buffer is free, a gradient
    still held must not be handed out again, and a freed one must still be reused."""
    monkeypatch.setattr(sys, "getrefcount", lambda obj: 3)
    xt.empty_cache()
    x = torch.randn(512, 1024, generator=_g(14))  # 2 MiB gradients: from the cache
    ys = [torch.randint(0, 1024, (512,), generator=_g(15 + i)) for i in range(3)]
    want = []
    for y in ys:
        b = x.clone().requires_grad_()
        F.cross_entropy(b, y).backward()
        want.append(b.grad)
    a = x.clone().requires_grad_()
    xt.cross_entropy(a, ys[0]).backward()
    held = a.grad
    a.grad = None
    xt.cross_entropy(a, ys[1]).backward()
    assert a.grad.data_ptr() != held.data_ptr()
    torch.testing.assert_close(held, want[0])
    ptr = held.data_ptr()
    del held
    a.grad = None
    xt.cross_entropy(a, ys[2]).backward()
    assert a.grad.data_ptr() == ptr
    torch.testing.assert_close(a.grad, want[2])
    a.grad = None
    xt.empty_cache()


# --- in-place changes between forward and backward --------------------------------

def _inplace_cases():
    g = _g(21)
    y = lambda: torch.tensor([0, 2, 1, 2])  # noqa: E731
    p = lambda: _probs((4, 3), g).float()  # noqa: E731
    r = lambda: torch.rand(4, 3, generator=g)  # noqa: E731
    # (name, loss(fn, x, target-ish tensor), make the tensor, change it in place)
    return [
        ("ce target", lambda f, x, t, red: f.cross_entropy(x, t, reduction=red), y,
         lambda t: t.copy_(torch.tensor([1, 1, 1, 1]))),
        ("ce probs", lambda f, x, t, red: f.cross_entropy(x, t, reduction=red), p,
         lambda t: t.mul_(2)),
        ("ce weight", lambda f, x, t, red: f.cross_entropy(x, y(), t, reduction=red),
         lambda: torch.rand(3, generator=g) + 0.5, lambda t: t.mul_(2)),
        ("nll target", lambda f, x, t, red: f.nll_loss(x, t, reduction=red), y,
         lambda t: t.copy_(torch.tensor([1, 1, 1, 1]))),
        ("bce logits target", lambda f, x, t, red: f.binary_cross_entropy_with_logits(
            x, t, reduction=red), r, lambda t: t.mul_(0.5)),
        ("kl target", lambda f, x, t, red: f.kl_div(x, t, reduction=red), r,
         lambda t: t.mul_(0.5)),
        ("linear target", lambda f, x, t, red: f.linear_cross_entropy(
            x, torch.ones(3, 3), t, reduction=red), y,
         lambda t: t.copy_(torch.tensor([1, 1, 1, 1]))),
    ]


@pytest.mark.parametrize("reduction,upstream", [("mean", 1.0), ("mean", 2.0), ("none", 1.0)])
def test_targets_and_weights_changed_in_place_raise_as_torch(reduction, upstream):
    """A prefetching loader copy_()s the next batch into the same target buffer before
    backward(): torch raises, and so must xent (it used to reuse the new values)."""
    for name, loss_of, make, change in _inplace_cases():
        for f in (F, xt):
            x = torch.randn(4, 3, generator=_g(22)).requires_grad_()
            t = make()
            loss = loss_of(f, x * 1.0, t, reduction)
            change(t)
            with pytest.raises(RuntimeError, match="modified by an inplace operation"):
                loss.backward(torch.full_like(loss, upstream))
            assert x.grad is None, (name, f.__name__)


@pytest.mark.parametrize("upstream", [1.0, 2.0])
def test_logits_changed_in_place_after_a_mean_loss_work_as_torch(upstream):
    """torch's cross_entropy does not keep its input, so changing the logits after the
    loss is fine; xent's mean/sum backward does not read them either."""
    x0 = torch.randn(4, 3, generator=_g(23))
    y = torch.tensor([0, 2, 1, 2])
    grads = []
    for f in (F.cross_entropy, xt.cross_entropy):
        x = x0.clone().requires_grad_()
        logits = x * 1.0
        loss = f(logits, y)
        logits.add_(5.0)
        loss.backward(torch.tensor(upstream))
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0])
    # the same for kl_div's input (torch keeps only the target for the input's gradient)
    for f in (F.kl_div, xt.kl_div):
        x = x0.clone().requires_grad_()
        logp = x * 1.0
        loss = f(logp, torch.softmax(x0, 1), reduction="batchmean")
        logp.add_(1.0)
        loss.backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[3], grads[2])


def test_inputs_torch_keeps_changed_in_place_raise_as_torch():
    y = torch.tensor([0, 2, 1, 2])
    for f in (F, xt):
        x = torch.randn(4, 3, generator=_g(24)).requires_grad_()
        logp = torch.log_softmax(x, 1)
        loss = f.nll_loss(logp, y)
        logp.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()
        z = x * 1.0
        loss = f.binary_cross_entropy_with_logits(z, torch.rand(4, 3))
        z.add_(1.0)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            loss.backward()


def test_logits_changed_before_a_none_backward_raise_a_clear_error():
    """The documented difference: for reduction='none' xent recomputes from the logits
    (it keeps no N x C softmax), so a change raises instead of a wrong gradient."""
    x = torch.randn(4, 3, generator=_g(25)).requires_grad_()
    logits = x * 1.0
    loss = xt.cross_entropy(logits, torch.tensor([0, 2, 1, 2]), reduction="none")
    logits.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation.*recomputes"):
        loss.sum().backward()


# --- autocast -----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_gives_float32_losses_as_torch(dtype):
    gen = _g(31)
    x = torch.randn(16, 10, generator=gen).to(dtype)
    y = torch.randint(0, 10, (16,), generator=gen)
    p = _probs((16, 10), gen).float()
    u = torch.rand(16, 10, generator=gen)
    h = torch.randn(16, 8, generator=gen).to(dtype)
    lw = torch.randn(10, 8, generator=gen).to(dtype)
    calls = [
        ("ce", lambda f, a: f.cross_entropy(a, y)),
        ("ce none", lambda f, a: f.cross_entropy(a, y, reduction="none")),
        ("ce probs f32", lambda f, a: f.cross_entropy(a, p)),
        ("ce probs 16", lambda f, a: f.cross_entropy(a, p.to(dtype))),
        ("nll", lambda f, a: f.nll_loss(a, y)),
        ("bce", lambda f, a: f.binary_cross_entropy(torch.sigmoid(a.float()).to(dtype),
                                                    u.to(dtype))),
        ("bce logits", lambda f, a: f.binary_cross_entropy_with_logits(a, u.to(dtype))),
        ("kl", lambda f, a: f.kl_div(a, p.to(dtype), reduction="batchmean")),
        ("linear", lambda f, a: f.linear_cross_entropy(h, lw, y)),
    ]
    for name, call in calls:
        with torch.autocast("cpu", dtype=dtype):
            a1, a2 = x.clone().requires_grad_(), x.clone().requires_grad_()
            mine, theirs = call(xt, a1), call(F, a2)
        assert mine.dtype == theirs.dtype == torch.float32, (name, mine.dtype)
        torch.testing.assert_close(mine, theirs, rtol=2e-2, atol=2e-2, msg=name)
        if mine.requires_grad:
            mine.sum().backward()
            theirs.sum().backward()
            assert a1.grad.dtype == a2.grad.dtype == dtype, name
            torch.testing.assert_close(a1.grad.float(), a2.grad.float(), rtol=5e-2,
                                       atol=1e-2, msg=name)


def test_autocast_f16_sum_does_not_overflow():
    """The issue's case: a sum above f16's 65504 is inf in f16 and finite in f32."""
    gen = _g(32)
    x = (torch.randn(50000, 8, generator=gen) * 2).half()
    y = torch.randint(0, 8, (50000,), generator=gen)
    with torch.autocast("cpu", dtype=torch.float16):
        mine = xt.cross_entropy(x, y, reduction="sum")
        theirs = F.cross_entropy(x, y, reduction="sum")
    assert mine.dtype == torch.float32 and theirs.item() > 65504
    torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=0.0)


def test_autocast_makes_no_float32_copy_of_the_logits():
    x = torch.randn(4096, 8192, generator=_g(33)).bfloat16()  # 64 MiB; f32 would be 128
    y = torch.randint(0, 8192, (4096,), generator=_g(34))
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _rss()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        loss = xt.cross_entropy(x, y)
    with open("/proc/self/status") as f:
        peak = next(int(line.split()[1]) << 10 for line in f if line.startswith("VmHWM:"))
    assert loss.dtype == torch.float32
    assert peak - base < 32 << 20, f"peak rose by {(peak - base) >> 20} MiB"


# --- target shapes and ignore_index ----------------------------------------------

def _same_error(fn_mine, fn_torch):
    with pytest.raises(Exception) as theirs:
        fn_torch()
    with pytest.raises(type(theirs.value)) as mine:
        fn_mine()
    assert str(mine.value) == str(theirs.value)


@pytest.mark.parametrize("xshape,tshape,probs", [
    ((4, 3), (3, 4), True),        # a transposed probability target
    ((4, 3), (4, 1), False),       # (N, 1) class indices
    ((4, 3), (1, 4), False),       # (1, N)
    ((2, 3, 4), (4, 2), False),    # K-dim, transposed
    ((2, 3, 4), (2, 1, 4), False),
    ((2, 3, 4, 5), (2, 5, 4), False),
])
def test_target_shapes_are_checked_as_torch(xshape, tshape, probs):
    x = torch.randn(xshape, generator=_g(41)).requires_grad_()
    t = torch.rand(tshape, generator=_g(42)) if probs else torch.zeros(tshape, dtype=torch.long)
    _same_error(lambda: xt.cross_entropy(x, t), lambda: F.cross_entropy(x, t))
    if not probs:
        _same_error(lambda: xt.nll_loss(x, t), lambda: F.nll_loss(x, t))


def test_a_square_transposed_probability_target_is_the_transpose():
    """Same shape, not contiguous: read as the values it holds, as torch does."""
    x = torch.randn(3, 3, generator=_g(43))
    t = _probs((3, 3), _g(44)).float().t()
    torch.testing.assert_close(xt.cross_entropy(x, t), F.cross_entropy(x, t))


def test_ignore_index_must_be_an_integer_as_torch():
    x = torch.randn(4, 3, generator=_g(45))
    y = torch.tensor([0, 1, 2, 1])
    for bad in (1.5, 1.0, True):
        with pytest.raises(TypeError, match="ignore_index"):
            F.cross_entropy(x, y, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index.*must be int"):
            xt.cross_entropy(x, y, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index.*must be int"):
            xt.nll_loss(x, y, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index.*must be int"):
            xt.linear_cross_entropy(x, torch.randn(5, 3), y, ignore_index=bad)
    for good in (np.int64(1), torch.tensor(1)):  # torch takes anything with __index__
        torch.testing.assert_close(xt.cross_entropy(x, y, ignore_index=good),
                                   F.cross_entropy(x, y, ignore_index=1))


# --- torch.func -------------------------------------------------------------------

def test_torch_func_transforms_fall_back_to_torch_with_a_warning():
    gen = _g(51)
    xs = torch.randn(5, 4, 3, generator=gen)
    ys = torch.randint(0, 3, (5, 4), generator=gen)
    xt._warned.clear()
    with pytest.warns(RuntimeWarning, match="torch.func"):
        mine = torch.func.vmap(lambda a, b: xt.cross_entropy(a, b, label_smoothing=0.1))(xs, ys)
    theirs = torch.func.vmap(lambda a, b: F.cross_entropy(a, b, label_smoothing=0.1))(xs, ys)
    torch.testing.assert_close(mine, theirs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once
        g1 = torch.func.grad(lambda a: xt.cross_entropy(a, ys[0]))(xs[0])
    g2 = torch.func.grad(lambda a: F.cross_entropy(a, ys[0]))(xs[0])
    torch.testing.assert_close(g1, g2)
    jac = torch.func.jacrev(lambda a: xt.cross_entropy(a, ys[0], reduction="none"))(xs[0])
    torch.testing.assert_close(
        jac, torch.func.jacrev(lambda a: F.cross_entropy(a, ys[0], reduction="none"))(xs[0]))
    v = torch.randn(4, 3, generator=gen)
    _, t1 = torch.func.jvp(lambda a: xt.binary_cross_entropy_with_logits(a, xs[1].sigmoid()),
                           (xs[0],), (v,))
    _, t2 = torch.func.jvp(lambda a: F.binary_cross_entropy_with_logits(a, xs[1].sigmoid()),
                           (xs[0],), (v,))
    torch.testing.assert_close(t1, t2)
    fwd = torch.autograd.forward_ad  # forward-mode AD outside torch.func
    tangents = []
    for f in (xt.cross_entropy, F.cross_entropy):
        with fwd.dual_level():
            tangents.append(fwd.unpack_dual(f(fwd.make_dual(xs[0], v), ys[0])).tangent)
    torch.testing.assert_close(tangents[0], tangents[1])


# --- smaller ones -------------------------------------------------------------------

def test_thread_count_is_bounded(monkeypatch):
    x, y = torch.randn(3, 4), torch.tensor([0, 1, 2])
    limit = 4 * (os.cpu_count() or 1)
    monkeypatch.setenv("XENT_NUM_THREADS", str(limit + 1))
    with pytest.raises(ValueError, match=f"XENT_NUM_THREADS={limit + 1} is more than {limit}"):
        xt.cross_entropy(x, y)
    monkeypatch.setenv("XENT_NUM_THREADS", "100000")
    with pytest.raises(ValueError, match="XENT_NUM_THREADS"):
        xt.cross_entropy(x, y)


def test_errors_have_torch_exception_types():
    x = torch.randn(2, 5)
    y = torch.tensor([1, 0])
    _same_type = [
        (lambda f: f.cross_entropy(x, y, label_smoothing=1.5), RuntimeError),
        (lambda f: f.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([1.0, 0.0])),
         RuntimeError),
        (lambda f: f.binary_cross_entropy(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 2.0])),
         RuntimeError),
        (lambda f: f.cross_entropy(x, torch.rand(2, 5), ignore_index=1), RuntimeError),
        (lambda f: f.cross_entropy(x, torch.tensor([1, 0, 2])), ValueError),
        (lambda f: f.cross_entropy(x, y, reduction="avg"), ValueError),
        (lambda f: f.cross_entropy(x, y, torch.ones(4)), RuntimeError),
    ]
    for call, kind in _same_type:
        with pytest.raises(kind):
            call(F)
        with pytest.raises(kind) as e:
            call(xt)
        assert type(e.value) is kind, (kind, e.value)


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_linear_cross_entropy_with_no_features(bias, reduction):
    """D = 0: every logit is the bias (or 0), the loss log V without one, as torch."""
    h0, w0 = torch.randn(4, 0), torch.randn(5, 0)
    b0 = torch.randn(5, generator=_g(61)) if bias else None
    y = torch.tensor([0, 1, 4, 3])
    got = []
    for f in (xt, F):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        b = None if b0 is None else b0.clone().requires_grad_()
        loss = f.linear_cross_entropy(h, w, y, linear_bias=b, reduction=reduction)
        loss.sum().backward()
        got.append((loss, h.grad, w.grad, None if b is None else b.grad))
    for a, c in zip(got[0], got[1]):
        if a is None:
            assert c is None
        else:
            torch.testing.assert_close(a, c)
    if not bias:
        torch.testing.assert_close(got[0][0].mean(), torch.tensor(np.log(5.0), dtype=torch.float32))


def test_invalid_softcap_and_z_loss_are_rejected_on_every_path():
    x = torch.randn(4, 3, generator=_g(71))
    y = torch.tensor([0, 1, 2, 0])
    p = _probs((4, 3), _g(72)).float().requires_grad_()  # probabilities with a gradient: torch
    xi = torch.randint(0, 3, (4, 3))  # an integer input: torch
    h, w = torch.randn(4, 3), torch.randn(5, 3)
    for kw in (dict(softcap=-2.0), dict(softcap=0.0), dict(softcap=float("nan")),
               dict(z_loss=-1.0), dict(z_loss=float("inf"))):
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.cross_entropy(x, y, **kw)  # xent's path
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.cross_entropy(x, p, **kw)
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.cross_entropy(xi, y, **kw)
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.CrossEntropyLoss(**kw)(x, y[:, None])  # a target shape torch decides on
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.linear_cross_entropy(h, w, y, **kw)
        with pytest.raises(ValueError, match="softcap|z_loss"):
            xt.linear_cross_entropy(h, w.double(), y, **kw)  # mixed dtypes: torch
