//! Both backends against a naive f64 product, on shapes that hit every edge
//! of the blocking (partial tiles, several K and N blocks), every transpose
//! combination, strided C, and the BLAS rules for `beta == 0` and `k == 0`.

use super::*;
use std::mem::MaybeUninit;

/// Row-major `[rows, cols]` as strides, or the transpose of a stored `[cols, rows]`.
fn strides(rows: usize, cols: usize, transposed: bool) -> (isize, isize) {
    if transposed {
        (1, rows as isize)
    } else {
        (cols as isize, 1)
    }
}

fn values(len: usize, seed: u64) -> Vec<f32> {
    (0..len)
        .map(|i| crate::rng::uniform_f32(seed, 7, i as u64) * 2.0 - 1.0)
        .collect()
}

/// Runs one product on `backend` and checks every element of C against
/// `α·A·B + β·C` in f64, to within f32 rounding of a `k`-term sum.
#[allow(clippy::too_many_arguments)]
fn check(
    backend: Backend,
    (m, k, n): (usize, usize, usize),
    (ta, tb): (bool, bool),
    sc: (isize, isize),
    c_len: usize,
    alpha: f32,
    beta: f32,
    c_fill: Option<f32>,
) {
    let (sa, sb) = (strides(m, k, ta), strides(k, n, tb));
    let a = values(m * k, 1);
    let b = values(k * n, 2);
    let c0 = match c_fill {
        Some(v) => vec![v; c_len],
        None => values(c_len, 3),
    };
    let mut c = c0.clone();
    sgemm_on(backend, m, k, n, alpha, &a, sa, &b, sb, beta, &mut c, sc);
    let at = |s: (isize, isize), i: usize, j: usize| i * s.0 as usize + j * s.1 as usize;
    let mut touched = vec![false; c_len];
    for i in 0..m {
        for j in 0..n {
            let (mut dot, mut size) = (0f64, 0f64);
            for p in 0..k {
                let prod = a[at(sa, i, p)] as f64 * b[at(sb, p, j)] as f64;
                dot += prod;
                size += prod.abs();
            }
            let e = at(sc, i, j);
            touched[e] = true;
            let old = if beta == 0.0 {
                0.0
            } else {
                beta as f64 * c0[e] as f64
            };
            let want = alpha as f64 * dot + old;
            let tol = 1e-7 * (k as f64 + 4.0) * (alpha.abs() as f64 * size + old.abs() + 1e-30);
            assert!(
                (c[e] as f64 - want).abs() <= tol,
                "{backend:?} m={m} k={k} n={n} ta={ta} tb={tb} alpha={alpha} beta={beta}: \
                 C[{i},{j}] = {} but expected {want}",
                c[e]
            );
        }
    }
    // Elements of C's slice outside the matrix are not written.
    for (e, (&new, &old)) in c.iter().zip(&c0).enumerate() {
        assert!(
            touched[e] || new.to_bits() == old.to_bits(),
            "{backend:?} m={m} k={k} n={n}: wrote C[{e}] outside the matrix"
        );
    }
}

fn backends() -> Vec<Backend> {
    let mut all = vec![Backend::MatrixMultiply];
    if avx512_available() {
        all.push(Backend::Avx512);
    } else {
        crate::skipped("this CPU has no AVX-512F, only the matrixmultiply backend is tested");
    }
    all
}

#[test]
fn odd_shapes_all_transposes_and_scalars() {
    let sizes = [1, 2, 3, 5, 11, 12, 13, 16, 17, 31, 32, 33, 47, 64, 70];
    let scalars = [(1.0, 0.0), (1.0, 1.0), (-0.5, 2.0), (0.0, 0.5)];
    for backend in backends() {
        let mut case = 0;
        for &m in &sizes {
            for &k in &sizes {
                for &n in &sizes {
                    let (ta, tb) = (case % 2 == 1, case / 2 % 2 == 1);
                    let (alpha, beta) = scalars[case / 4 % scalars.len()];
                    let sc = strides(m, n, false);
                    check(backend, (m, k, n), (ta, tb), sc, m * n, alpha, beta, None);
                    case += 1;
                }
            }
        }
    }
}

#[test]
fn large_shapes_cross_every_block_boundary() {
    // k > 2·KC: three K blocks; m > MC; n > NC: two N blocks; k so deep
    // that B blocks are narrowed to fit B_BLOCK (k = 41,948: 96 columns).
    let shapes = [
        (7, B_BLOCK / 100 + 5, 3 * NR + 3),
        (2 * MC + 5, 2 * KC + 3, 3 * NR + 7),
        (300, 600, 100),
        (5, 3, NC + 9),
        (MR + 1, KC + 1, NR + 1),
    ];
    for backend in backends() {
        for (i, &shape) in shapes.iter().enumerate() {
            let t = (i % 2 == 1, i / 2 % 2 == 1);
            let sc = strides(shape.0, shape.2, false);
            let len = shape.0 * shape.2;
            check(backend, shape, t, sc, len, 1.0, 0.5, None);
        }
    }
}

#[test]
fn strided_and_column_major_c() {
    for backend in backends() {
        for &(m, k, n) in &[(13, 9, 35), (40, 70, 3), (1, 5, 33)] {
            // Column-major C.
            check(
                backend,
                (m, k, n),
                (false, true),
                (1, m as isize),
                m * n,
                1.0,
                1.0,
                None,
            );
            // Row-major C inside a wider array: the padding columns must stay untouched.
            let rs = n + 3;
            check(
                backend,
                (m, k, n),
                (true, false),
                (rs as isize, 1),
                m * rs,
                2.0,
                -1.0,
                None,
            );
            // Every other element of every other row.
            let sc = (4 * n as isize, 2);
            check(
                backend,
                (m, k, n),
                (false, false),
                sc,
                4 * n * m,
                1.0,
                0.0,
                None,
            );
        }
    }
}

#[test]
fn beta_zero_overwrites_nan_and_k_zero_scales_c() {
    for backend in backends() {
        for &(m, k, n) in &[(7, 5, 9), (12, 300, 32), (25, 1, 70)] {
            let sc = strides(m, n, false);
            check(
                backend,
                (m, k, n),
                (false, false),
                sc,
                m * n,
                1.0,
                0.0,
                Some(f32::NAN),
            );
        }
        // k == 0: C = β·C, and β == 0 zeroes even NaN.
        for (beta, fill, want) in [(0.0, f32::NAN, 0.0), (0.5, 4.0, 2.0)] {
            let mut c = vec![fill; 6];
            sgemm_on(
                backend,
                2,
                0,
                3,
                1.0,
                &[],
                (0, 1),
                &[],
                (3, 1),
                beta,
                &mut c,
                (3, 1),
            );
            assert_eq!(c, vec![want; 6], "{backend:?} k=0 beta={beta}");
        }
    }
}

#[test]
fn results_do_not_depend_on_the_thread_count() {
    if !avx512_available() {
        crate::skipped("this CPU has no AVX-512F");
        return;
    }
    let (m, k, n) = (203, 517, 77);
    let a = values(m * k, 4);
    let b = values(k * n, 5);
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut c = values(m * n, 6);
        pool.install(|| {
            sgemm_on(
                Backend::Avx512,
                m,
                k,
                n,
                1.0,
                &a,
                (k as isize, 1),
                &b,
                (n as isize, 1),
                1.0,
                &mut c,
                (n as isize, 1),
            )
        });
        c
    };
    let one = run(1);
    for threads in [2, 3, 7] {
        let other = run(threads);
        assert!(
            one.iter()
                .zip(&other)
                .all(|(x, y)| x.to_bits() == y.to_bits()),
            "{threads} threads gave different bits than 1"
        );
    }
}

#[test]
#[should_panic(expected = "C out of bounds")]
fn short_c_is_refused() {
    let mut c = vec![0.0; 5];
    sgemm(
        2,
        1,
        3,
        1.0,
        &[1.0; 2],
        (1, 1),
        &[1.0; 3],
        (3, 1),
        0.0,
        &mut c,
        (3, 1),
    );
}

/// Checks `c` (`m` rows of `n`, `rsc` apart, from `c0`) against sgemm's
/// `C = A·B` bit for bit (A `m×k`, B `k×n`, both row-major), against the
/// definition within `tol`, and that the `rsc - n` floats past each row
/// still hold `c0`'s values.
#[allow(clippy::too_many_arguments)]
fn check_like_sgemm(
    (m, k, n): (usize, usize, usize),
    a: &[f32],
    b: &[f32],
    c0: &[f32],
    c: &[f32],
    rsc: usize,
    tol: f64,
) {
    let mut want = c0.to_vec();
    sgemm_on(
        Backend::Avx512,
        m,
        k,
        n,
        1.0,
        a,
        (k as isize, 1),
        b,
        (n as isize, 1),
        0.0,
        &mut want,
        (rsc as isize, 1),
    );
    for (e, (&got, &want)) in c.iter().zip(&want).enumerate() {
        assert_eq!(got.to_bits(), want.to_bits(), "C[{e}]");
    }
    for i in 0..m {
        for j in 0..n {
            let want: f64 = (0..k)
                .map(|p| a[i * k + p] as f64 * b[p * n + j] as f64)
                .sum();
            let got = c[i * rsc + j] as f64;
            assert!(
                (got - want).abs() < tol,
                "C[{i},{j}] = {got}, expected {want}"
            );
        }
        for j in n..rsc {
            let e = i * rsc + j;
            assert_eq!(c[e].to_bits(), c0[e].to_bits(), "wrote C[{i},{j}] past n");
        }
    }
}

#[test]
fn tile_in_place_reads_runs_and_matches_the_packed_gemm() {
    if !avx512_available() {
        crate::skipped("this CPU has no AVX-512F");
        return;
    }
    // A's MR rows overlap in memory as a conv's fields do: row r is 3 runs
    // of 7 floats, run s at r·5 + s·40 (k = 21). n = 40: a full and a
    // partial panel of B. C rows are 45 apart, so 5 floats per row must stay.
    let rows = RowsOfA {
        row_stride: 5,
        runs: 3,
        run_len: 7,
        run_stride: 40,
    };
    let (k, n, rsc) = (21, 40, 45);
    let src = values((MR - 1) * 5 + 2 * 40 + 7, 7);
    let b = values(k * n, 8);
    let packed = PackedB::new(k, n, &b, (n as isize, 1));
    // The same A as a plain matrix, for the naive product and the GEMM.
    let a: Vec<f32> = (0..MR)
        .flat_map(|r| (0..k).map(move |p| (r, p)))
        .map(|(r, p)| src[r * 5 + (p / 7) * 40 + p % 7])
        .collect();
    let c0 = values(MR * rsc, 9);
    let mut c: Vec<MaybeUninit<f32>> = c0.iter().map(|&v| MaybeUninit::new(v)).collect();
    tile_in_place(&src, rows, &packed, &mut c, rsc);
    // SAFETY: every element was initialised above (and maybe overwritten).
    let c: Vec<f32> = c.iter().map(|v| unsafe { v.assume_init() }).collect();
    check_like_sgemm((MR, k, n), &a, &b, &c0, &c, rsc, 1e-5);
}

#[test]
fn gemm_packed_multiplies_by_the_chosen_k_blocks() {
    if !avx512_available() {
        crate::skipped("this CPU has no AVX-512F");
        return;
    }
    // B is 5 K blocks of 200 rows, packed once; A (29 rows: two tiles and
    // a partial one of 5) meets blocks 2 and 3, rows 400..800 of B. C rows
    // are 80 apart (n = 77), so the 3 floats past each row must stay.
    let (m, kc, n, rsc) = (29, 200, 77, 80);
    let b = values(5 * kc * n, 10);
    let packed = PackedB::blocked(5 * kc, n, &b, (n as isize, 1), kc);
    let a = values(m * 2 * kc, 11);
    let c0 = values(m * rsc, 12);
    let mut c = c0.clone();
    gemm_packed(
        m,
        &Strided::row_major(&a, 2 * kc),
        &packed,
        2..4,
        &mut c,
        rsc,
    );
    // The same product by sgemm on rows 400..800 of B: k = 400 is cut into
    // the same two blocks of 200, so the bits agree.
    check_like_sgemm((m, 2 * kc, n), &a, &b[2 * kc * n..], &c0, &c, rsc, 1e-4);
}

#[test]
fn tile_in_place_refuses_a_short_a() {
    if !avx512_available() {
        crate::skipped("this CPU has no AVX-512F");
        return;
    }
    // MR rows of 4 floats, 4 apart, need 4·MR floats: one fewer must panic.
    let packed = PackedB::new(4, 32, &[0.0; 128], (32, 1));
    let short = std::panic::catch_unwind(|| {
        let mut c = vec![MaybeUninit::new(0.0); MR * 32];
        tile_in_place(
            &[0.0; 4 * MR - 1],
            RowsOfA::packed(4, 4),
            &packed,
            &mut c,
            32,
        );
    });
    assert!(short.is_err(), "a short A was read");
}

#[test]
fn row_blocks_cover_m_evenly_for_any_thread_count() {
    for m in [1, 11, 12, 13, 203, 1568, 2048, 12544] {
        for threads in [1, 2, 3, 7] {
            let blocks = row_block_count(m, threads);
            let tiles = m.div_ceil(MR);
            assert!(
                blocks == tiles || blocks.is_multiple_of(threads),
                "m={m} threads={threads}"
            );
            let mut next = 0;
            let mut sizes = Vec::new();
            for b in 0..blocks {
                let rows = row_block(m, blocks, b);
                assert_eq!(rows.start, next, "m={m} threads={threads} block {b}");
                assert!(rows.start.is_multiple_of(MR) && rows.len() <= MC);
                next = rows.end;
                sizes.push(rows.len().div_ceil(MR));
            }
            assert_eq!(next, m, "m={m} threads={threads}: rows not covered");
            let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
            assert!(
                hi - lo <= 1,
                "m={m} threads={threads}: block sizes {sizes:?}"
            );
        }
    }
}
