"""xent.torch against torch.nn.functional: losses and gradients (through .backward() on
both sides) on random cases, the reference computed by torch in float64."""

import itertools
import threading
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent.torch as xt
from conftest import DTYPES, close

REDUCTIONS = ["mean", "sum", "none"]


def run(fn, leaves, upstream):
    """The loss and the gradients of `leaves` through `.backward()` with `upstream`
    (None: loss.backward() for a 0-d loss)."""
    for t in leaves:
        t.grad = None
    loss = fn()
    if upstream is None:
        loss.backward()
    else:
        (loss * upstream.to(loss.dtype)).sum().backward()
    return loss.detach(), [t.grad for t in leaves]


def leaf(t, dtype):
    return t.detach().to(dtype).requires_grad_()


def both(xent_fn, torch_fn, tensors, dtype, reduction, gen, what, needs=None):
    """Runs xent_fn on `tensors` in `dtype` and torch_fn on the same values in float64,
    with a random upstream gradient for 'none' (and a scaled one for mean/sum half the
    time), and compares losses and gradients."""
    needs = needs or [True] * len(tensors)
    mine = [leaf(t, dtype) if n else t.detach().to(dtype) for t, n in zip(tensors, needs)]
    ref = [leaf(m.detach(), torch.float64) if n else m.detach().double()
           for m, n in zip(mine, needs)]
    lm, lr = xent_fn(*mine), torch_fn(*ref)
    shape = lr.shape
    if reduction == "none":
        up = torch.randn(shape, generator=gen, dtype=torch.float64)
    else:
        up = torch.tensor(float(torch.rand((), generator=gen)) + 0.5, dtype=torch.float64) \
            if torch.rand((), generator=gen) < 0.5 else None
    if up is not None:
        up = up.to(dtype).double()  # both sides see the same upstream gradient
    lm, gm = run(lambda: xent_fn(*mine), [m for m, n in zip(mine, needs) if n], up)
    lr, gr = run(lambda: torch_fn(*ref), [r for r, n in zip(ref, needs) if n], up)
    assert lm.dtype == dtype, (what, lm.dtype)
    close(lm, lr, dtype, f"{what} loss")
    for i, (a, b) in enumerate(zip(gm, gr)):
        assert a is not None, f"{what}: no gradient for input {i}"
        assert a.dtype == dtype and a.shape == b.shape
        close(a, b, dtype, f"{what} grad {i}")


SHAPES = [(7,), (6, 7), (3, 5, 4), (2, 4, 3, 2)]


def rows_of(shape):
    return () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_indices(dtype, shape, gen):
    c = shape[0] if len(shape) == 1 else shape[1]
    for reduction, weighted, ignore, ls in itertools.product(
            REDUCTIONS, [False, True], [-100, 1], [0.0, 0.15]):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
        y = torch.randint(0, c, rows_of(shape), generator=gen)
        if ignore == 1 and y.dim() > 0:
            y.view(-1)[::3] = 1  # some rows ignored (class 1 is the ignore_index)
        w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double() \
            if weighted else None
        kw = dict(ignore_index=ignore, reduction=reduction, label_smoothing=ls)
        both(lambda a: xt.cross_entropy(a, y, None if w is None else w.to(dtype), **kw),
             lambda a: F.cross_entropy(a, y, w, **kw),
             [x], dtype, reduction, gen, f"ce {shape} {kw} w={weighted}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_cross_entropy_probabilities(dtype, shape, gen):
    c = shape[0] if len(shape) == 1 else shape[1]
    for reduction, weighted, ls in itertools.product(REDUCTIONS, [False, True], [0.0, 0.2]):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 2
        t = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64),
                          dim=0 if len(shape) == 1 else 1)
        t = t.to(dtype).double()  # representable in dtype: both sides see the same target
        w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double() \
            if weighted else None
        kw = dict(reduction=reduction, label_smoothing=ls)
        both(lambda a: xt.cross_entropy(a, t.to(dtype), None if w is None else w.to(dtype),
                                        **kw),
             lambda a: F.cross_entropy(a, t, w, **kw),
             [x], dtype, reduction, gen, f"ce probs {shape} {kw} w={weighted}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_z_loss_and_softcap_match_the_torch_composition(dtype, reduction, gen):
    x = torch.randn(8, 11, generator=gen, dtype=torch.float64) * 4
    y = torch.randint(0, 11, (8,), generator=gen)
    y[2] = -100
    kw = dict(reduction=reduction, z_loss=1e-2, softcap=5.0, label_smoothing=0.1)
    both(lambda a: xt.cross_entropy(a, y, **kw),
         lambda a: xt._torch_cross_entropy(a, y, None, -100, reduction, 0.1, 1e-2, 5.0),
         [x], dtype, reduction, gen, f"ce z/softcap {kw}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES[1:])
def test_nll_loss(dtype, shape, gen):
    c = shape[1]
    for reduction, weighted, ignore in itertools.product(REDUCTIONS, [False, True], [-100, 0]):
        x = torch.log_softmax(torch.randn(shape, generator=gen, dtype=torch.float64), dim=1)
        y = torch.randint(0, c, rows_of(shape), generator=gen)
        w = (torch.rand(c, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double() \
            if weighted else None
        kw = dict(ignore_index=ignore, reduction=reduction)
        both(lambda a: xt.nll_loss(a, y, None if w is None else w.to(dtype), **kw),
             lambda a: F.nll_loss(a, y, w, **kw),
             [x], dtype, reduction, gen, f"nll {shape} {kw}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(), (9,), (4, 6), (2, 3, 5)])
def test_binary_cross_entropy(dtype, shape, gen):
    for reduction, wshape in itertools.product(REDUCTIONS, [None, "full", "last", "col"]):
        if wshape == "col" and len(shape) < 2:
            continue
        p = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.98 + 0.01
        y = (torch.rand(shape, generator=gen, dtype=torch.float64) < 0.5).double()
        w = {None: None,
             "full": torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5,
             "last": torch.rand(shape[-1:], generator=gen, dtype=torch.float64) + 0.5,
             "col": torch.rand(shape[:-1] + (1,), generator=gen, dtype=torch.float64) + 0.5,
             }[wshape]
        w = None if w is None else w.to(dtype).double()
        both(lambda a: xt.binary_cross_entropy(a, y.to(dtype), None if w is None else
                                               w.to(dtype), reduction=reduction),
             lambda a: F.binary_cross_entropy(a, y, w, reduction=reduction),
             [p], dtype, reduction, gen, f"bce {shape} {reduction} w={wshape}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9,), (4, 6), (2, 3, 5)])
def test_binary_cross_entropy_with_logits(dtype, shape, gen):
    for reduction, weighted, pw in itertools.product(REDUCTIONS, [False, True],
                                                     [None, "last", "one"]):
        x = torch.randn(shape, generator=gen, dtype=torch.float64) * 3
        y = torch.rand(shape, generator=gen, dtype=torch.float64)  # soft labels
        y = y.to(dtype).double()
        w = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.5 if weighted else None
        pwt = {None: None, "one": torch.tensor([2.5], dtype=torch.float64),
               "last": torch.rand(shape[-1:], generator=gen, dtype=torch.float64) * 3}[pw]
        w = None if w is None else w.to(dtype).double()
        pwt = None if pwt is None else pwt.to(dtype).double()
        both(lambda a: xt.binary_cross_entropy_with_logits(
                 a, y.to(dtype), None if w is None else w.to(dtype), reduction=reduction,
                 pos_weight=None if pwt is None else pwt.to(dtype)),
             lambda a: F.binary_cross_entropy_with_logits(a, y, w, reduction=reduction,
                                                          pos_weight=pwt),
             [x], dtype, reduction, gen, f"bcel {shape} {reduction} w={weighted} pw={pw}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (4, 6), (2, 3, 4)])
def test_kl_div_with_both_gradients(dtype, shape, gen):
    for reduction, log_target in itertools.product(REDUCTIONS + ["batchmean"], [False, True]):
        x = torch.log_softmax(torch.randn(shape, generator=gen, dtype=torch.float64), dim=-1)
        t = torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64), dim=-1)
        if log_target:
            t = t.log()
        t = t.to(dtype).double()
        upstream_red = "none" if reduction == "none" else "mean"
        both(lambda a, b: xt.kl_div(a, b, reduction=reduction, log_target=log_target),
             lambda a, b: F.kl_div(a, b, reduction=reduction, log_target=log_target),
             [x, t], dtype, upstream_red, gen, f"kl {shape} {reduction} lt={log_target}")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
@pytest.mark.parametrize("lead", [(), (10,), (3, 4)])
def test_linear_cross_entropy(dtype, lead, gen):
    d, v = 16, 23
    for reduction, bias, weighted, ignore, ls in itertools.product(
            REDUCTIONS, [False, True], [False, True], [None, 2], [0.0, 0.1]):
        h = torch.randn(lead + (d,), generator=gen, dtype=torch.float64)
        w = torch.randn(v, d, generator=gen, dtype=torch.float64) * 0.3
        b = torch.randn(v, generator=gen, dtype=torch.float64) if bias else None
        y = torch.randint(0, v, lead, generator=gen)
        if ignore is not None and y.dim() > 0:
            y.view(-1)[::4] = ignore
        cw = (torch.rand(v, generator=gen, dtype=torch.float64) + 0.5).to(dtype).double() \
            if weighted else None
        kw = dict(reduction=reduction, ignore_index=ignore, label_smoothing=ls)
        tensors = [h, w] + ([b] if bias else [])

        def mine(a, bw, *bb):
            return xt.linear_cross_entropy(a, bw, y, linear_bias=bb[0] if bb else None,
                                           weight=None if cw is None else cw.to(dtype), **kw)

        def ref(a, bw, *bb):
            if a.dim() > 2:  # torch's takes 1-d and 2-d inputs; xent's any (..., D)
                logits = F.linear(a, bw, bb[0] if bb else None).movedim(-1, 1)
                kw2 = dict(kw, ignore_index=-100 if ignore is None else ignore)
                return F.cross_entropy(logits, y, cw, **kw2)
            return F.linear_cross_entropy(a, bw, y, linear_bias=bb[0] if bb else None,
                                          weight=cw, **kw)

        both(mine, ref, tensors, dtype, reduction, gen,
             f"linear {lead} {kw} bias={bias} w={weighted}")


def test_modules_match_torch_modules(gen):
    x = torch.randn(6, 5, generator=gen)
    y = torch.randint(0, 5, (6,), generator=gen)
    w = torch.rand(5, generator=gen) + 0.5
    pairs = [
        (xt.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.1),
         torch.nn.CrossEntropyLoss(w, ignore_index=2, label_smoothing=0.1), x, y),
        (xt.NLLLoss(w, reduction="sum"), torch.nn.NLLLoss(w, reduction="sum"),
         torch.log_softmax(x, 1), y),
        (xt.BCEWithLogitsLoss(pos_weight=w), torch.nn.BCEWithLogitsLoss(pos_weight=w), x,
         torch.rand(6, 5, generator=gen)),
        (xt.KLDivLoss(reduction="batchmean"), torch.nn.KLDivLoss(reduction="batchmean"),
         torch.log_softmax(x, 1), torch.softmax(torch.randn(6, 5, generator=gen), 1)),
    ]
    for mine, theirs, a, b in pairs:
        assert mine.state_dict().keys() == theirs.state_dict().keys()
        a1, a2 = a.clone().requires_grad_(), a.clone().requires_grad_()
        l1, l2 = mine(a1, b), theirs(a2, b)
        l1.backward()
        l2.backward()
        torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-5, atol=1e-6)


def test_module_extras_and_legacy_reduction(gen):
    x = torch.randn(4, 3, generator=gen)
    y = torch.tensor([0, 2, 1, 1])
    m = xt.CrossEntropyLoss(z_loss=1e-3, softcap=3.0)
    ref = xt._torch_cross_entropy(x, y, None, -100, "mean", 0.0, 1e-3, 3.0)
    torch.testing.assert_close(m(x, y), ref)
    # size_average=False means 'sum', as in torch
    torch.testing.assert_close(xt.cross_entropy(x, y, size_average=False),
                               F.cross_entropy(x, y, reduction="sum"))


def test_gradient_accumulates_into_grad(gen):
    x = torch.randn(5, 4, generator=gen)
    y1, y2 = torch.tensor([0, 1, 2, 3, 0]), torch.tensor([3, 3, 1, 0, -100])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    for yy in (y1, y2):
        xt.cross_entropy(a, yy).backward()
        F.cross_entropy(b, yy).backward()
    torch.testing.assert_close(a.grad, b.grad)


def test_retain_graph_backward_twice(gen):
    x = torch.randn(5, 4, generator=gen)
    y = torch.tensor([0, 1, 2, 3, 0])
    a, b = x.clone().requires_grad_(), x.clone().requires_grad_()
    la, lb = xt.cross_entropy(a, y), F.cross_entropy(b, y)
    for _ in range(3):
        la.backward(retain_graph=True)
        lb.backward(retain_graph=True)
    torch.testing.assert_close(a.grad, b.grad)


def test_requires_grad_false_and_no_grad_give_plain_losses(gen):
    x = torch.randn(5, 4, generator=gen)
    y = torch.tensor([0, 1, 2, 3, 0])
    l1 = xt.cross_entropy(x, y)
    assert l1.grad_fn is None and not l1.requires_grad
    xr = x.clone().requires_grad_()
    with torch.no_grad():
        l2 = xt.cross_entropy(xr, y)
    assert l2.grad_fn is None
    torch.testing.assert_close(l1, F.cross_entropy(x, y))
    torch.testing.assert_close(l2, l1)


def _vm(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def test_no_grad_on_1gb_allocates_no_gradient():
    n, c = 8192, 32768  # 2^28 f32 = 1 GiB of logits
    x = torch.empty(n, c).uniform_(-4, 4).requires_grad_()
    y = torch.randint(0, c, (n,))
    base = _vm("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM, the peak resident size
    with torch.no_grad():
        loss = xt.cross_entropy(x, y)
    rise = _vm("VmHWM") - base
    assert loss.grad_fn is None and x.grad is None
    assert rise < 64 << 20, f"peak rose by {rise >> 20} MiB under no_grad"
    # the same call with a gradient does allocate it (the check above can fail)
    xt.empty_cache()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _vm("VmRSS")
    xt.cross_entropy(x, y).backward()
    assert _vm("VmHWM") - base > 900 << 20
    assert torch.isfinite(loss)
    x.grad = None
    xt.empty_cache()


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype, gen):
    base = torch.randn(7, 6, generator=gen, dtype=torch.float64)
    x = base.t()  # (6, 7), not contiguous
    y = torch.randint(0, 7, (6,), generator=gen)
    assert not x.is_contiguous()
    both(lambda a: xt.cross_entropy(a.t().contiguous().t(), y),
         lambda a: F.cross_entropy(a, y), [x], dtype, "mean", gen, "ce non-contiguous")
    xs = torch.randn(6, 14, generator=gen, dtype=torch.float64)[:, ::2]
    both(lambda a: xt.cross_entropy(a.repeat_interleave(2, 1)[:, ::2], y),
         lambda a: F.cross_entropy(a, y), [xs], dtype, "sum", gen, "ce strided")
    t = torch.rand(12, 5, generator=gen, dtype=torch.float64)[::2]
    both(lambda a: xt.binary_cross_entropy_with_logits(a.t().contiguous().t(), t.to(dtype)),
         lambda a: F.binary_cross_entropy_with_logits(a, t), [torch.randn(6, 5, generator=gen,
                                                         dtype=torch.float64)],
         dtype, "mean", gen, "bcel non-contiguous target")


def test_bad_input_raises_not_crashes():
    x = torch.randn(2, 5)
    with pytest.raises(IndexError, match=r"target 7 at index \[1\] is out of bounds for 5"):
        xt.cross_entropy(x, torch.tensor([1, 7]))
    with pytest.raises(IndexError, match="target -3"):
        xt.cross_entropy(x, torch.tensor([-3, 0]))
    with pytest.raises(IndexError):
        F.cross_entropy(x, torch.tensor([1, 7]))  # torch raises the same type
    with pytest.raises(IndexError, match="target 5"):
        xt.nll_loss(x, torch.tensor([5, 0]))
    with pytest.raises(RuntimeError, match="label_smoothing"):
        xt.cross_entropy(x, torch.tensor([1, 0]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        xt.cross_entropy(x, torch.tensor([1, 0]), reduction="avg")
    with pytest.raises(ValueError, match="batch_size"):
        xt.cross_entropy(x, torch.tensor([1, 0, 2]))
    with pytest.raises(RuntimeError, match="weight"):
        xt.cross_entropy(x, torch.tensor([1, 0]), torch.ones(4))
    with pytest.raises(RuntimeError, match="input"):
        xt.binary_cross_entropy(torch.tensor([0.5, 1.5]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match="z_loss"):
        xt.cross_entropy(x, torch.tensor([1, 0]), z_loss=-1.0)
    with pytest.raises(RuntimeError):
        xt.cross_entropy(torch.randn(()), torch.tensor(0))
    with pytest.raises(IndexError, match="target 9"):
        xt.linear_cross_entropy(torch.randn(2, 3), torch.randn(4, 3), torch.tensor([0, 9]))
    # with a gradient asked for, the error comes before anything is written
    xr = x.clone().requires_grad_()
    with pytest.raises(IndexError):
        xt.cross_entropy(xr, torch.tensor([1, 7]))
    assert xr.grad is None


def test_fallback_dtype_and_cuda_paths_warn_once(gen):
    xt._warned.clear()
    xi = torch.randint(0, 3, (2, 3))
    with pytest.warns(RuntimeWarning, match="falling back"):
        with pytest.raises(RuntimeError) as mine:
            xt.cross_entropy(xi, torch.tensor([0, 1]))
    with pytest.raises(RuntimeError) as theirs:
        F.cross_entropy(xi, torch.tensor([0, 1]))
    assert str(mine.value) == str(theirs.value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second call does not warn again
        with pytest.raises(RuntimeError):
            xt.cross_entropy(xi, torch.tensor([0, 1]))
    # probability targets that need a gradient: torch computes it
    x = torch.randn(4, 3, generator=gen, requires_grad=True)
    t = torch.softmax(torch.randn(4, 3, generator=gen), 1).requires_grad_()
    with pytest.warns(RuntimeWarning, match="probability targets"):
        loss = xt.cross_entropy(x, t, z_loss=1e-2)
    loss.backward()
    x2, t2 = x.detach().clone().requires_grad_(), t.detach().clone().requires_grad_()
    ref = xt._torch_cross_entropy(x2, t2, None, -100, "mean", 0.0, 1e-2, None)
    ref.backward()
    torch.testing.assert_close(loss, ref)
    torch.testing.assert_close(t.grad, t2.grad)
    if torch.cuda.is_available():
        xc = torch.randn(4, 3, device="cuda")
        with pytest.warns(RuntimeWarning, match="not on the CPU"):
            xt.cross_entropy(xc, torch.tensor([0, 1, 2, 0], device="cuda"))


def test_two_python_threads_at_once(gen):
    cases = []
    for _ in range(2):
        x = torch.randn(64, 300, generator=gen)
        y = torch.randint(0, 300, (64,), generator=gen)
        x2 = x.clone().requires_grad_()
        F.cross_entropy(x2, y).backward()
        cases.append((x, y, F.cross_entropy(x, y), x2.grad))
    errors = []
    barrier = threading.Barrier(2)

    def work(i):
        try:
            x, y, want, want_grad = cases[i]
            barrier.wait()
            for _ in range(50):
                a = x.clone().requires_grad_()
                loss = xt.cross_entropy(a, y)
                loss.backward()
                torch.testing.assert_close(loss, want)
                torch.testing.assert_close(a.grad, want_grad)
        except Exception as e:  # reported in the main thread
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_thread_count_from_environment(monkeypatch):
    x = torch.randn(8, 5)
    y = torch.randint(0, 5, (8,))
    monkeypatch.setenv("XENT_NUM_THREADS", "1")
    one = xt.cross_entropy(x, y)
    monkeypatch.setenv("XENT_NUM_THREADS", "3")
    three = xt.cross_entropy(x, y)
    assert one.item() == three.item()  # results do not depend on the thread count
    monkeypatch.setenv("XENT_NUM_THREADS", "zero")
    with pytest.raises(ValueError, match="XENT_NUM_THREADS"):
        xt.cross_entropy(x, y)



def test_gradient_buffers_are_reused_only_when_free(gen):
    xt.empty_cache()
    x = torch.randn(512, 1024, generator=gen)  # 2 MiB gradients: cached
    ys = [torch.randint(0, 1024, (512,), generator=gen) for _ in range(3)]
    want = []
    for y in ys:
        b = x.clone().requires_grad_()
        F.cross_entropy(b, y).backward()
        want.append(b.grad)
    a = x.clone().requires_grad_()
    xt.cross_entropy(a, ys[0]).backward()
    first = a.grad
    ptr = first.data_ptr()
    # while the first gradient is held, the next call must not write into it
    a.grad = None
    xt.cross_entropy(a, ys[1]).backward()
    assert a.grad.data_ptr() != ptr
    torch.testing.assert_close(first, want[0])
    torch.testing.assert_close(a.grad, want[1])
    # once nothing refers to it, it is reused
    del first
    a.grad = None
    xt.cross_entropy(a, ys[2]).backward()
    assert a.grad.data_ptr() == ptr
    torch.testing.assert_close(a.grad, want[2])
    xt.empty_cache()


def test_linear_none_backward_never_holds_the_logits(gen):
    n, d, v = 2048, 32, 32000  # N x V f32 logits would be 250 MiB
    h = torch.randn(n, d, generator=gen, requires_grad=True)
    w = (torch.randn(v, d, generator=gen) * 0.1).requires_grad_()
    y = torch.randint(0, v, (n,), generator=gen)
    up = torch.rand(n, generator=gen)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = _vm("VmRSS")
    loss = xt.linear_cross_entropy(h, w, y, reduction="none")
    (loss * up).sum().backward()
    rise = _vm("VmHWM") - base
    assert rise < 100 << 20, f"peak rose by {rise >> 20} MiB"
    # against the unfused form on a slice of the rows (same weights, same upstream)
    h2, w2 = h.detach()[:64].clone().requires_grad_(), w.detach().clone().requires_grad_()
    ref = F.cross_entropy(h2 @ w2.T, y[:64], reduction="none")
    torch.testing.assert_close(loss[:64].detach(), ref.detach(), rtol=1e-5, atol=1e-5)
    (ref * up[:64]).sum().backward()
    torch.testing.assert_close(h.grad[:64], h2.grad, rtol=1e-4, atol=1e-6)


def test_works_in_a_forked_child_after_use_in_the_parent(gen):
    import os

    x = torch.randn(64, 50, generator=gen)
    y = torch.randint(0, 50, (64,), generator=gen)
    want = xt.cross_entropy(x, y).item()  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # child: a DataLoader worker would be here
        code = 1
        try:
            code = 0 if xt.cross_entropy(x, y).item() == want else 2
        finally:
            os._exit(code)
    import time

    deadline = time.time() + 60
    while time.time() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("xent hung in a forked child")
