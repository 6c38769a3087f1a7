#!/usr/bin/env python3
"""The alpha-beta model of xent-mpi's collectives at Llama-3 scale (BENCHMARKS.md,
"Beyond one machine").

Ring all-reduce of n bytes over p ranks: t = 2(p-1)*alpha + 2(p-1)/p * n * beta.
Per call and rank (N rows per tensor-parallel group, V classes split over T ranks):
  forward: MAX of N f64 row maxima + one SUM of N x 4 f64 (s, l, a, x_y) over the
           T ranks of a node, and a SUM of 2 f64 counts over the P/T groups (mean);
  backward: nothing for cross-entropy; the linear form also SUMs dh (N x D, in the
            inputs' type: f32 here).
Compute per rank: the per-element (cross-entropy) and per-flop (linear) rates
measured with `xent-mpi bench` on this machine, one core per rank.

Usage: python3 bench/mpi_alpha_beta.py [--ns-per-elem 1.25] [--gflops 55.7] ...
Only the standard library.
"""
import argparse


def ring(p, n_bytes, alpha, beta):
    if p <= 1:
        return 0.0
    return 2 * (p - 1) * alpha + 2 * (p - 1) / p * n_bytes * beta


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--vocab", type=int, default=128256)
    ap.add_argument("--rows", type=int, default=8192, help="N per tensor-parallel group")
    ap.add_argument("--hidden", type=int, default=4096, help="D of the linear form")
    ap.add_argument("--tp", type=int, default=8)
    ap.add_argument("--alpha-intra", type=float, default=0.75e-6, help="s, measured")
    ap.add_argument("--beta-intra", type=float, default=1.1e-9, help="s/byte, measured")
    ap.add_argument("--alpha-inter", type=float, default=5e-6, help="s, assumed")
    ap.add_argument("--beta-inter", type=float, default=0.04e-9, help="s/byte, assumed")
    ap.add_argument("--ns-per-elem", type=float, default=1.25, help="CE fwd+bwd, ns per logit, measured")
    ap.add_argument("--gflops", type=float, default=55.7, help="linear GEMMs per rank, measured")
    ap.add_argument("--speedup", type=float, default=100.0,
                    help="second column: compute this many times faster (an accelerator)")
    a = ap.parse_args()

    n, v, t, d = a.rows, a.vocab, a.tp, a.hidden
    per_row = 8 + 4 * 8
    print(f"bytes communicated per row (forward): {per_row}")
    print(f"logits per row: {4 * v} B (f32), {4 * v // t} B per rank at TP {t}: "
          f"ratio {per_row / (4 * v):.2e} / {per_row / (4 * v / t):.2e}")
    ce_comp = n * (v / t) * a.ns_per_elem * 1e-9
    lin_comp = 8 * n * d * (v / t) / (a.gflops * 1e9)
    tp_fwd = ring(t, 8 * n, a.alpha_intra, a.beta_intra) + ring(t, 32 * n, a.alpha_intra, a.beta_intra)
    tp_dh = ring(t, 4 * n * d, a.alpha_intra, a.beta_intra)
    print(f"per rank: CE compute {ce_comp * 1e3:.1f} ms, linear compute {lin_comp:.1f} s, "
          f"TP forward all-reduces {tp_fwd * 1e6:.1f} us, TP dh all-reduce {tp_dh * 1e3:.1f} ms")
    print()
    k = a.speedup
    print(f"| P | TP × DP | DP count all-reduce | CE eff. | CE eff., compute ×{k:g} "
          f"| linear CE eff. | linear CE eff., compute ×{k:g} |")
    print("|---:|---|---:|---:|---:|---:|---:|")
    p = t
    while p <= 1024:
        dp = p // t
        dp_t = ring(dp, 16, a.alpha_inter, a.beta_inter)
        eff = lambda c, comm: 100 * c / (c + comm)
        ce_comm, lin_comm = tp_fwd + dp_t, tp_fwd + tp_dh + dp_t
        print(f"| {p} | {t} × {dp} | {dp_t * 1e6:.1f} µs | {eff(ce_comp, ce_comm):.2f}% "
              f"| {eff(ce_comp / k, ce_comm):.2f}% | {eff(lin_comp, lin_comm):.2f}% "
              f"| {eff(lin_comp / k, lin_comm):.2f}% |")
        p *= 2


if __name__ == "__main__":
    main()
