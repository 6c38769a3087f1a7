"""The numpy API against torch.nn.functional (float64 reference)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import xent


def grad_of(fn, *arrays):
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    loss = fn(*ts)
    loss.backward()
    return loss.detach().numpy(), [t.grad.numpy() for t in ts]


def rng():
    return np.random.default_rng(7)


@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-10), (np.float32, 2e-5),
                                        (np.float16, 3e-3)])
@pytest.mark.parametrize("shape", [(5,), (6, 5), (3, 5, 4)])
def test_cross_entropy_and_nll(dtype, rtol, shape):
    r = rng()
    c = shape[0] if len(shape) == 1 else shape[1]
    rows = () if len(shape) == 1 else (shape[0],) + shape[2:]
    x = (r.standard_normal(shape) * 2).astype(dtype)
    y = r.integers(0, c, rows)
    w = (r.random(c) + 0.5)
    for red in ["mean", "sum", "none"]:
        loss, g = xent.cross_entropy(x, y, w, reduction=red, label_smoothing=0.1, grad=True)
        want, (gw,) = grad_of(lambda t: F.cross_entropy(
            t, torch.tensor(y), torch.tensor(w), reduction=red, label_smoothing=0.1).sum(),
            x.astype(np.float64))
        if red == "none":
            want = F.cross_entropy(torch.tensor(x, dtype=torch.float64), torch.tensor(y),
                                   torch.tensor(w), reduction="none",
                                   label_smoothing=0.1).numpy()
        assert g.dtype == x.dtype and g.shape == x.shape
        assert loss.dtype == (np.float64 if dtype == np.float64 else np.float32)
        np.testing.assert_allclose(loss, want, rtol=rtol, atol=rtol)
        np.testing.assert_allclose(g.astype(np.float64), gw, rtol=rtol, atol=rtol * 4)
        lsm = np.asarray(xent.log_softmax(x.astype(np.float64), dim=0 if len(shape) == 1 else 1))
        nl, ng = xent.nll_loss(lsm, y, w, reduction=red, grad=True)
        want_n = F.nll_loss(torch.tensor(lsm), torch.tensor(y), torch.tensor(w),
                            reduction=red).numpy()
        np.testing.assert_allclose(nl, want_n, rtol=1e-12)


def test_probability_targets_and_no_copy_inputs():
    r = rng()
    x = r.standard_normal((4, 6)).astype(np.float32)
    t = r.dirichlet(np.ones(6), 4).astype(np.float32)
    loss = xent.cross_entropy(x, t)
    want = F.cross_entropy(torch.tensor(x), torch.tensor(t)).item()
    assert abs(float(loss) - want) < 1e-5
    # a Fortran-ordered array is copied once and gives the same result
    assert abs(float(xent.cross_entropy(np.asfortranarray(x), t)) - want) < 1e-5


@pytest.mark.parametrize("dim", [0, 1, 2, -1, None])
def test_softmax_any_dim(dim):
    x = rng().standard_normal((3, 4, 5))
    want = F.softmax(torch.tensor(x), dim=0 if dim is None else dim).numpy()
    np.testing.assert_allclose(xent.softmax(x, dim), want, rtol=1e-12)
    want = F.log_softmax(torch.tensor(x), dim=0 if dim is None else dim).numpy()
    np.testing.assert_allclose(xent.log_softmax(x, dim), want, rtol=1e-12, atol=1e-14)


def test_binary_losses_and_kl():
    r = rng()
    p = r.random((5, 3)) * 0.9 + 0.05
    y = (r.random((5, 3)) < 0.5).astype(np.float64)
    pw = r.random(3) + 0.5
    loss, g = xent.binary_cross_entropy(p, y, reduction="sum", grad=True)
    want, (gw,) = grad_of(lambda t: F.binary_cross_entropy(t, torch.tensor(y), reduction="sum"), p)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(g, gw, rtol=1e-12)
    loss, g = xent.binary_cross_entropy_with_logits(p, y, pos_weight=pw, grad=True)
    want, (gw,) = grad_of(lambda t: F.binary_cross_entropy_with_logits(
        t, torch.tensor(y), pos_weight=torch.tensor(pw)), p)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(g, gw, rtol=1e-12)
    lq = np.log(r.dirichlet(np.ones(3), 5))
    t = r.dirichlet(np.ones(3), 5)
    loss, gi, gt = xent.kl_div(lq, t, reduction="batchmean", grad=True)
    want, (gwi, gwt) = grad_of(lambda a, b: F.kl_div(a, b, reduction="batchmean"), lq, t)
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    np.testing.assert_allclose(gi, gwi, rtol=1e-12)
    np.testing.assert_allclose(gt, gwt, rtol=1e-10)


def test_js_div_against_its_definition():
    r = rng()
    a, b = r.standard_normal((4, 5)), r.standard_normal((4, 5))
    loss, ga, gb = xent.js_div(a, b, logits=True, grad=True)

    def js(s, t):
        p, q = torch.softmax(s, 1), torch.softmax(t, 1)
        m = (p + q) / 2
        return (0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean()

    want, (gwa, gwb) = grad_of(js, a, b)
    np.testing.assert_allclose(loss, want, rtol=1e-10)
    np.testing.assert_allclose(ga, gwa, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(gb, gwb, rtol=1e-8, atol=1e-12)


def test_linear_cross_entropy_and_class_weights():
    r = rng()
    h, w, b = r.standard_normal((6, 4)), r.standard_normal((7, 4)), r.standard_normal(7)
    y = r.integers(0, 7, 6)
    loss, (gh, gw, gb) = xent.linear_cross_entropy(h, w, y, linear_bias=b, grad=True)
    want, (gh2, gw2, gb2) = grad_of(
        lambda a, bw, bb: F.cross_entropy(a @ bw.T + bb, torch.tensor(y)), h, w, b)
    np.testing.assert_allclose(loss, want, rtol=1e-10)
    for got, ref in [(gh, gh2), (gw, gw2), (gb, gb2)]:
        np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-12)
    cw = xent.class_weights(np.array([0, 0, 0, 1]), 2)
    np.testing.assert_allclose(cw, [4 / 6, 2.0])


def test_linear_cross_entropy_with_no_features():
    """D = 0: the logits are the bias, the loss log V without one (as torch)."""
    y = np.array([0, 1, 4, 3])
    loss, (gh, gw, gb) = xent.linear_cross_entropy(np.zeros((4, 0), np.float32),
                                                   np.zeros((5, 0), np.float32), y, grad=True)
    np.testing.assert_allclose(loss, np.log(5.0), rtol=1e-6)
    assert gh.shape == (4, 0) and gw.shape == (5, 0) and gb is None


def test_errors_are_python_exceptions():
    x = np.zeros((2, 5), np.float32)
    with pytest.raises(IndexError, match=r"target 7 at index \[1\]"):
        xent.cross_entropy(x, np.array([1, 7]))
    with pytest.raises(RuntimeError, match="label_smoothing"):  # as torch raises it
        xent.cross_entropy(x, np.array([1, 0]), label_smoothing=2.0)
    with pytest.raises(RuntimeError, match=r"input 1.5 at index \[1\] is out of range"):
        xent.binary_cross_entropy(np.array([0.5, 1.5]), np.array([1.0, 0.0]))
    with pytest.raises(ValueError, match="z_loss"):  # an option torch does not have
        xent.cross_entropy(x, np.array([1, 0]), z_loss=-1.0)
    with pytest.raises(TypeError, match="target"):
        xent.nll_loss(x, np.array(["a", "b"]))
    with pytest.raises(ValueError, match="scheme"):
        xent.class_weights(np.array([0, 1]), 2, scheme="nope")


def test_a_non_integer_ignore_index_is_a_type_error_as_in_torch():
    # 1.5 was taken as 1 (int() truncates); torch raises TypeError for a float or bool.
    x = np.zeros((2, 5), np.float32)
    t = np.array([1, 0])
    for bad in (1.5, 1.0, True):
        with pytest.raises(TypeError, match="ignore_index"):
            xent.cross_entropy(x, t, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index"):
            xent.nll_loss(x, t, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index"):
            xent.linear_cross_entropy(np.zeros((2, 3), np.float32),
                                      np.zeros((5, 3), np.float32), t, ignore_index=bad)
        with pytest.raises(TypeError, match="ignore_index"):
            xent.class_weights(t, 5, ignore_index=bad)
    # Integers of any kind are taken, as torch takes them.
    for ok in (1, np.int32(1), np.int64(1)):
        assert xent.cross_entropy(x, t, ignore_index=ok) == xent.cross_entropy(x, t, ignore_index=1)
