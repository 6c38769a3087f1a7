"""torch's own composition of xent's cross-entropy options, used by ``xent.torch`` where
xent's kernels do not run (the fallback: CUDA tensors, torch.func transforms, …) and for
the differentiable backward under ``create_graph=True``."""

import torch
import torch.nn.functional as F

from ._common import RowStats


def scaled_logits(input, softcap, logit_scale):
    """The logits as the loss sees them: ``softcap·tanh(s·x/softcap)``, scale first."""
    x = input
    if logit_scale != 1.0:
        x = x * logit_scale
    if softcap is not None:
        x = softcap * torch.tanh(x / softcap)
    return x


def _counted(target, ignore_index, like):
    """1 for the rows that count (every row of probability targets), else 0."""
    if target.is_floating_point():
        return torch.ones_like(like)
    return (target != ignore_index).to(like.dtype)


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing, z_loss,
                  softcap, logit_scale=1.0, denominator=None):
    """torch's cross_entropy with xent's logit scale, soft-capping, z-loss and
    denominator composed from torch ops. With ``denominator`` (reduction 'mean') the
    summed loss and z terms are divided by it."""
    x = scaled_logits(input, softcap, logit_scale)
    red = "sum" if denominator is not None else reduction
    loss = F.cross_entropy(x, target, weight, ignore_index=ignore_index, reduction=red,
                           label_smoothing=label_smoothing)
    if z_loss:
        lse = torch.logsumexp(x, dim=1 if x.dim() > 1 else 0)
        keep = _counted(target, ignore_index, lse)
        z = z_loss * lse.pow(2) * keep
        if red == "none":
            loss = loss + z
        elif red == "sum":
            loss = loss + z.sum()
        else:
            loss = loss + z.sum() / keep.sum()
    if denominator is not None:
        loss = loss / denominator
    return loss


def nll_loss(input, target, weight, ignore_index, reduction, denominator=None):
    """torch's nll_loss, the summed loss divided by ``denominator`` when given."""
    if denominator is None:
        return F.nll_loss(input, target, weight, ignore_index=ignore_index, reduction=reduction)
    return F.nll_loss(input, target, weight, ignore_index=ignore_index,
                      reduction="sum") / denominator


def row_stats(input, target, ignore_index, z_loss, softcap, logit_scale):
    """:class:`RowStats` from torch ops: ``logsumexp``, ``−Σ p·log p``, ``argmax`` and the
    z term of ``softcap(s·x)`` over dim 1 (dim 0 of a ``(C,)`` input), in the
    accumulation dtype (float64 for float64, float32 otherwise), detached."""
    with torch.no_grad():
        work = torch.float64 if input.dtype == torch.float64 else torch.float32
        x = scaled_logits(input.detach().to(work), softcap, logit_scale)
        dim = 1 if x.dim() > 1 else 0
        lse = torch.logsumexp(x, dim=dim)
        logp = x - lse.unsqueeze(dim)
        entropy = -(logp.exp() * logp).sum(dim=dim)
        z = z_loss * lse.pow(2) * _counted(target, ignore_index, lse)
        return RowStats(lse, entropy, torch.argmax(x, dim=dim), z)
