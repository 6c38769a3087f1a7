//! The integer, bit and masked primitives of every instruction set against
//! [`Scalar`]'s, lane by lane (the vector math is tested in `kernels::tests`).

use super::{Kernel, Scalar, Simd};

/// Floats where rounding, conversion and bit operations have edge cases.
const FLOATS: [f32; 32] = [
    0.0,
    -0.0,
    0.5,
    -0.5,
    1.5,
    2.5,
    -2.5,
    0.499_999_97,
    8_388_607.5,
    -8_388_609.0,
    1e10,
    -1e10,
    2_147_483_520.0,
    2_147_483_648.0,
    -2_147_483_648.0,
    -2_147_483_904.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::NAN,
    f32::MAX,
    f32::MIN_POSITIVE,
    1e-40,
    -1e-40,
    127.0,
    -126.0,
    88.7,
    -87.5,
    0.7,
    1.0,
    -1.0,
    3.0,
    -7.25,
];

/// Integers for the integer primitives.
const INTS: [i32; 16] = [
    0,
    1,
    -1,
    127,
    -126,
    128,
    255,
    16_777_217,
    -16_777_217,
    0x007f_ffff,
    0x3f00_0000,
    i32::MAX,
    i32::MIN,
    i32::MIN + 1,
    0x4b40_007f,
    -0x0080_0000,
];

/// Every primitive's lanes (a row each), as f32 bits.
type Lanes = Vec<Vec<u32>>;

/// [`Lanes`] of one instruction set.
struct Primitives;

impl Kernel for Primitives {
    type Out = Lanes;
    fn run<S: Simd>(self, s: S) -> Lanes {
        let n = S::LANES;
        let mut out: Lanes = vec![];
        let mut put = |v: S::V, row: usize| {
            let mut lanes = [0.0f32; 16];
            s.write_lanes(v, &mut lanes);
            if out.len() <= row {
                out.push(vec![]);
            }
            out[row].extend(lanes[..n].iter().map(|x| x.to_bits()));
        };
        // The integers as f32 bits, twice over (as many as the floats), and reversed.
        let ints: Vec<f32> = INTS
            .iter()
            .chain(&INTS)
            .map(|&i| f32::from_bits(i as u32))
            .collect();
        let rev: Vec<f32> = ints.iter().rev().copied().collect();
        for k in (0..FLOATS.len()).step_by(n) {
            let a = s.vector_of(&FLOATS[k..k + n]);
            let ia = s.to_bits(s.vector_of(&ints[k..k + n]));
            let ib = s.to_bits(s.vector_of(&rev[k..k + n]));
            let bits = |i: S::I| s.bits_to_f32(i);
            let mask = s.lt(a, s.splat(1.0));
            put(s.round(a), 0);
            put(bits(s.to_i32(a)), 1);
            put(s.i32_to_f32(ia), 2);
            put(bits(s.to_bits(a)), 3);
            put(bits(s.splat_i32(-127)), 4);
            put(bits(s.add_i32(ia, ib)), 5);
            put(bits(s.sub_i32(ia, ib)), 6);
            put(bits(s.min_i32(ia, ib)), 7);
            put(bits(s.shl_23(ia)), 8);
            put(bits(s.shr_23(ia)), 9);
            put(s.and(mask, a), 10);
            put(s.andnot(mask, a), 11);
            put(s.or(a, s.splat(-0.0)), 12);
            put(s.add_where(mask, a, s.splat(3.0)), 13);
            put(s.abs(a), 14);
            put(s.outside(a, 0.0, f32::INFINITY), 15);
            put(s.outside(a, -1.0, 1.0), 16);
            put(bits(s.shl_20(ia)), 17);
            // Every index of the table, from the low 3 bits of arbitrary integers.
            put(
                bits(s.lut8(&[-1, 2, i32::MIN, 7, 0x3f80_0000, -8, 5, i32::MAX], ia)),
                18,
            );
        }
        out
    }
}

/// Each primitive gives [`Scalar`]'s lanes on every instruction set this CPU has:
/// exactly, except NaN lanes, which need only be NaN.
#[test]
fn primitives_match_scalar() {
    let want = Scalar.vectorize(Primitives);
    #[cfg(target_arch = "x86_64")]
    let isas = [
        super::Avx2::detect().map(|s| ("avx2", s.vectorize(Primitives))),
        super::Avx512::detect().map(|s| ("avx512", s.vectorize(Primitives))),
    ];
    #[cfg(not(target_arch = "x86_64"))]
    let isas: [Option<(&str, Lanes)>; 0] = [];
    for (isa, got) in isas.into_iter().flatten() {
        for (row, (g, w)) in got.iter().zip(&want).enumerate() {
            for (lane, (&g, &w)) in g.iter().zip(w).enumerate() {
                let nan = |b: u32| f32::from_bits(b).is_nan();
                // Float results (rows 0, 2, 10–16) may differ in NaN bits only.
                let float_row = matches!(row, 0 | 2 | 10..=16);
                assert!(
                    g == w || (float_row && nan(g) && nan(w)),
                    "{isa}: primitive {row}, lane {lane}: {g:#010x}, scalar {w:#010x}"
                );
            }
        }
    }
}

/// A `LANES × LANES` block of [`FLOATS`] (NaN, infinities and subnormals among
/// them) through [`Simd::transpose_block`] into `B`, and one vector through
/// [`Simd::stream`] and [`Simd::store`]: the values each gives, widened to f32 bits.
struct StoresAndTransposes<B>(core::marker::PhantomData<B>);

impl<B: super::Store32> Kernel for StoresAndTransposes<B> {
    type Out = (Vec<u32>, Vec<u32>, Vec<u32>);
    fn run<S: Simd>(self, s: S) -> Self::Out {
        let n = S::LANES;
        let (ss, ds) = (n + 3, n + 5);
        let src: Vec<f32> = (0..n * ss)
            .map(|i| FLOATS[(i * 7) % FLOATS.len()])
            .collect();
        let mut dst = vec![B::from_f32(-9.0); n * ds];
        // SAFETY: `src` holds n rows of `ss ≥ n` floats and `dst` n rows of `ds ≥ n`
        // elements; they do not overlap.
        unsafe { s.transpose_block(src.as_ptr(), ss, dst.as_mut_ptr(), ds) };
        // 64-byte aligned room for one vector of any `B` (at most 16 × 4 bytes).
        #[repr(align(64))]
        struct Line([f32; 16]);
        let mut line = Line([0.0; 16]);
        let mut stored = vec![B::from_f32(0.0); n];
        let v = s.vector_of(&FLOATS[..n]);
        // SAFETY: `line` is 64-byte aligned and holds 64 bytes ≥ n elements of `B`;
        // `stored` holds n elements.
        let streamed = unsafe {
            let p = line.0.as_mut_ptr() as *mut B;
            s.stream(p, v);
            s.stream_fence();
            s.store(stored.as_mut_ptr(), v);
            core::slice::from_raw_parts(p, n).to_vec()
        };
        let bits = |v: &[B]| v.iter().map(|x| x.to_f32().to_bits()).collect();
        (bits(&dst), bits(&streamed), bits(&stored))
    }
}

/// [`StoresAndTransposes`] on one instruction set against [`Scalar`]'s element-wise
/// forms: the same bits, except NaN lanes, which need only be NaN.
fn stores_and_transposes_match<S: Simd, B: super::Store32>(isa: &str, s: S) {
    let k = || StoresAndTransposes::<B>(core::marker::PhantomData);
    let (dst, streamed, stored) = s.vectorize(k());
    let n = S::LANES;
    let (ss, ds) = (n + 3, n + 5);
    let src: Vec<f32> = (0..n * ss)
        .map(|i| FLOATS[(i * 7) % FLOATS.len()])
        .collect();
    let mut want = vec![B::from_f32(-9.0); n * ds];
    // SAFETY: as in `StoresAndTransposes::run`.
    unsafe { super::transpose_each(src.as_ptr(), ss, want.as_mut_ptr(), ds, (n, n)) };
    let want: Vec<u32> = want.iter().map(|x| x.to_f32().to_bits()).collect();
    let line: Vec<u32> = FLOATS[..n]
        .iter()
        .map(|&x| B::from_f32(x).to_f32().to_bits())
        .collect();
    let same =
        |g: u32, w: u32| g == w || (f32::from_bits(g).is_nan() && f32::from_bits(w).is_nan());
    for (what, got, want) in [
        ("transpose", &dst, &want),
        ("stream", &streamed, &line),
        ("store", &stored, &line),
    ] {
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            assert!(
                same(g, w),
                "{isa} {what} {}: element {i}: {g:#010x}, scalar {w:#010x}",
                core::any::type_name::<B>()
            );
        }
    }
}

/// Block transposes and streaming stores on every instruction set, in each storage
/// type, give what the element-wise scalar forms give; an instruction set this CPU
/// lacks is reported as skipped.
#[test]
fn stores_and_transposes_match_scalar() {
    use half::{bf16, f16};
    fn all<S: Simd>(isa: &str, s: S) {
        stores_and_transposes_match::<S, f32>(isa, s);
        stores_and_transposes_match::<S, bf16>(isa, s);
        stores_and_transposes_match::<S, f16>(isa, s);
    }
    all("scalar", Scalar);
    #[cfg(target_arch = "x86_64")]
    {
        match super::Avx2::detect() {
            Some(s) => all("avx2", s),
            None => eprintln!(
                "stores_and_transposes_match_scalar: avx2 skipped (CPU lacks AVX2/FMA/F16C)"
            ),
        }
        match super::Avx512::detect() {
            Some(s) => all("avx512", s),
            None => {
                eprintln!("stores_and_transposes_match_scalar: avx512 skipped (CPU lacks AVX-512F)")
            }
        }
    }
}
