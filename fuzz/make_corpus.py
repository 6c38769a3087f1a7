#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets: the hostile inputs found by hand and a
few legal ones, as raw bytes (no NumPy needed). Run from the repository root:
`python3 fuzz/make_corpus.py`; the files are committed under fuzz/corpus/."""
import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def npy(descr, shape, data=b"", fortran=False, version=1):
    """A .npy file with a literal header (shape as Python text)."""
    f = "True" if fortran else "False"
    header = "{'descr': '%s', 'fortran_order': %s, 'shape': %s, }" % (descr, f, shape)
    pre = 10 if version == 1 else 12
    header += " " * ((-(pre + len(header) + 1)) % 64) + "\n"
    length = struct.pack("<H", len(header)) if version == 1 else struct.pack("<I", len(header))
    return b"\x93NUMPY" + bytes([version, 0]) + length + header.encode() + data


def f64s(*v):
    return struct.pack("<%dd" % len(v), *v)


def f32s(*v):
    return struct.pack("<%df" % len(v), *v)


def i64s(*v):
    return struct.pack("<%dq" % len(v), *v)


NPY = {
    # Legal files.
    "f64_2x3": npy("<f8", "(2, 3)", f64s(1, 2, 3, 4, 5, 6)),
    "f32_be_3": npy(">f4", "(3,)", struct.pack(">3f", 1, float("nan"), float("-inf"))),
    "f32_fortran_2x3": npy("<f4", "(2, 3)", f32s(0, 3, 1, 4, 2, 5), fortran=True),
    "i64_0d": npy("<i8", "()", i64s(7)),
    "u8_empty_0x5": npy("|u1", "(0, 5)"),
    "u16_v2": npy("<u2", "(2,)", b"\x01\x00\x02\x00", version=2),
    "py2_long_dims": npy("<f8", "(1L, 2L)", f64s(0.5, 1.5)),
    # Crash 1 of the hostile-input review: a zero class dim with rows that overflow usize.
    "zero_class_2x0x2p63": npy("<f8", "(2, 0, 9223372036854775808)"),
    "target_2x2p63": npy("<i8", "(2, 9223372036854775808)"),
    "zero_class_2p32x0x2p32": npy("<f8", "(4294967296, 0, 4294967296)"),
    "target_2p32x2p32": npy("<i8", "(4294967296, 4294967296)"),
    # Crash 3: an empty (2^40, 0) weight.
    "weight_2p40x0": npy("<f4", "(1099511627776, 0)"),
    "weight_2p62x0": npy("<f4", "(4611686018427387904, 0)"),
    # Headers that lie about the data.
    "announces_2p40_has_8": npy("<f8", "(1099511627776,)", f64s(1)),
    "short_data": npy("<f8", "(2, 3)", f64s(1, 2, 3, 4, 5)),
    "extra_data": npy("<f8", "(2,)", f64s(1, 2, 3)),
    "negative_dim": npy("<f8", "(-2, 3)"),
    "huge_dim": npy("<f8", "(99999999999999999999999, 0)"),
    "shape_is_list": npy("<f8", "[2]", f64s(1, 2)),
    "shape_paren_int": npy("<f8", "(2)", f64s(1, 2)),
    "deep_nesting": npy("<f8", "(" * 200 + "2" + ")" * 200),
    "bool_dtype": npy("|b1", "(3,)", b"\x01\x00\x01"),
    "half_dtype": npy("<f2", "(1,)", b"\x00\x3c"),
    "record_dtype": b"\x93NUMPY\x01\x00" + struct.pack("<H", 70)
    + b"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }    \n"[:70]
    + f32s(1),
    "pipe_f4": npy("|f4", "(1,)", f32s(1)),
    "header_len_4g": b"\x93NUMPY\x02\x00\xff\xff\xff\xff",
    "bad_magic": b"\x93NUMPX\x01\x00\x00\x00",
    "truncated_preamble": b"\x93NUM",
    "version_9": b"\x93NUMPY\x09\x00\x00\x00",
    "dup_key": b"\x93NUMPY\x01\x00" + struct.pack("<H", 86)
    + b"{'descr': '<f8', 'descr': '<f8', 'fortran_order': False, 'shape': (1,), }           \n"[:86]
    + f64s(1),
}


def cli(kind, red=0, flags=0, optional=0, ignore=-100, eps=0.0, z=0.0, cap=0.0, files=()):
    """A `xent_cli::fuzzing::cli` input: 36 option bytes, then .npy files."""
    opt = bytes([kind, red, flags, optional]) + struct.pack("<q", ignore)
    opt += struct.pack("<ddd", eps, z, cap)
    assert len(opt) == 36
    return opt + b"\nXENTFILE\n".join(files)


OUT, GRAD, GRAD_T, GRAD_B, JSON, LOGITS, CAP = 1, 2, 4, 8, 16, 32, 64
x33 = npy("<f8", "(3, 3)", f64s(1, 2, 3, 1, 2, 3, 1, 2, 3))
t3 = npy("<i8", "(3,)", i64s(2, 1, 0))
CLI = {
    "ce_classic": cli(0, flags=OUT | GRAD, files=[x33, t3]),
    "ce_options": cli(0, red=2, flags=OUT | GRAD | CAP | JSON, ignore=1, eps=0.1, z=1e-4, cap=5.0,
                      files=[x33, t3]),
    "ce_probs": cli(0, flags=OUT, files=[x33, x33]),
    "nll": cli(1, red=1, flags=GRAD, files=[x33, t3]),
    "bce": cli(2, flags=OUT | GRAD, files=[npy("<f8", "(3,)", f64s(0.1, 0.5, 0.9)),
                                           npy("<f8", "(3,)", f64s(0, 1, 1))]),
    "bce_logits_pw": cli(3, flags=OUT, optional=4, files=[x33, x33, b"", b"", npy("<f8", "(3,)", f64s(1, 2, 3))]),
    "kl": cli(4, red=3, flags=OUT | GRAD | GRAD_T, files=[x33, x33]),
    "js_logits": cli(5, flags=OUT | GRAD | GRAD_T | LOGITS, files=[x33, x33]),
    "linear": cli(6, flags=OUT | GRAD | GRAD_T | GRAD_B, optional=4,
                  files=[npy("<f8", "(2, 2)", f64s(1, 0, 0, 1)), npy("<i8", "(2,)", i64s(2, 1)),
                         npy("<f8", "(3, 2)", f64s(1, 0, 0, 1, 1, 1)), b"", npy("<f8", "(3,)", f64s(0, 0.5, -0.5))]),
    # The hostile cases through the CLI path.
    "ce_zero_class_wrap": cli(0, flags=OUT, files=[NPY["zero_class_2x0x2p63"], NPY["target_2x2p63"]]),
    "ce_zero_class_wrap32": cli(0, flags=OUT, files=[NPY["zero_class_2p32x0x2p32"], NPY["target_2p32x2p32"]]),
    "linear_d0_n6": cli(6, flags=OUT | GRAD_B, files=[npy("<f4", "(6, 0)"), npy("<i8", "(6,)", i64s(0, 1, 2, 0, 1, 2)),
                                                      npy("<f4", "(3, 0)")]),
    "linear_weight_2p40x0": cli(6, flags=OUT | GRAD_B, files=[npy("<f4", "(1, 0)"), npy("<i8", "(1,)", i64s(0)),
                                                              NPY["weight_2p40x0"]]),
    "ce_nan_options": cli(0, flags=OUT | CAP, eps=float("nan"), z=float("inf"), cap=-1.0, files=[x33, t3]),
    "ce_target_oob": cli(0, flags=OUT | GRAD, files=[x33, npy("<i8", "(3,)", i64s(2, 7, 0))]),
}

for sub, files in (("npy", NPY), ("cli", CLI)):
    d = os.path.join(ROOT, sub)
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
print("wrote", len(NPY), "npy and", len(CLI), "cli seeds under", ROOT)
