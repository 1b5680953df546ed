//! NumPy broadcasting, shared by the elementwise binary ops ([`add`](super::add)
//! and [`mul`](crate::ops::mul)).
//!
//! Shapes are aligned on the right; a missing or size-1 dim stretches to the
//! other operand's size: `[2, 3] + [3]` is `[2, 3]`, `[2, 1, 4] + [3, 1]` is
//! `[2, 3, 4]`. Each operand is read through strides over the output's dims,
//! with stride 0 on the dims it is broadcast along, so no operand is ever
//! materialised at the output size.
//!
//! Backward: an operand used at many output positions receives the sum of
//! the output gradient over those positions ([`reduce_to`]).

use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::parallel;
use crate::tensor::numel;

/// How the two operands map onto the output.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    /// The broadcast output shape.
    pub out: Vec<usize>,
    /// Strides of `a` and `b` over the output's dims (0 where broadcast).
    pub strides: [Vec<usize>; 2],
    /// The fast cases, which need no index arithmetic.
    pub layout: Layout,
}

/// The layouts with a fast path; everything else walks the strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// Both operands have the output's shape (the ResNet shortcut): a plain zip.
    Same,
    /// Operand `0` or `1` repeats with period = its length along the output:
    /// its shape is a suffix of the output's (a bias `[c]` on `[n, h, w, c]`),
    /// and the other operand has the output's shape.
    Repeats(usize),
    /// Anything else.
    Strided,
}

/// Row-major strides of `shape` aligned on the right of `out`, 0 on missing
/// and size-1 dims.
fn strides_over(out: &[usize], shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; out.len()];
    let mut step = 1;
    for k in 1..=shape.len() {
        let d = shape[shape.len() - k];
        strides[out.len() - k] = if d == 1 { 0 } else { step };
        step *= d;
    }
    strides
}

/// Whether `shape` (after dropping leading 1s) equals the trailing dims of `out`.
fn is_suffix(out: &[usize], shape: &[usize]) -> bool {
    let first = shape.iter().position(|&d| d != 1).unwrap_or(shape.len());
    let core = &shape[first..];
    core.len() <= out.len() && out[out.len() - core.len()..] == *core
}

/// The broadcast of shapes `a` and `b`, or an error naming `op`.
pub(crate) fn plan(op: &'static str, a: &[usize], b: &[usize]) -> Result<Plan> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for k in 1..=rank {
        let da = if k <= a.len() { a[a.len() - k] } else { 1 };
        let db = if k <= b.len() { b[b.len() - k] } else { 1 };
        out[rank - k] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(Error::shape(
                op,
                format!(
                    "shapes {a:?} and {b:?} do not broadcast: dim {} from the right is {da} vs {db} \
                     (each dim must be equal, 1, or missing)",
                    k
                ),
            ));
        };
    }
    let layout = if a == out.as_slice() && b == out.as_slice() {
        Layout::Same
    } else if a == out.as_slice() && is_suffix(&out, b) {
        Layout::Repeats(1)
    } else if b == out.as_slice() && is_suffix(&out, a) {
        Layout::Repeats(0)
    } else {
        Layout::Strided
    };
    let strides = [strides_over(&out, a), strides_over(&out, b)];
    Ok(Plan {
        out,
        strides,
        layout,
    })
}

impl Plan {
    /// Calls `f(i, offset_a, offset_b)` for every output element `i` in
    /// row-major order: an odometer over the outer dims, a strided loop on
    /// the last one.
    pub(crate) fn walk(&self, mut f: impl FnMut(usize, usize, usize)) {
        let total = numel(&self.out);
        if total == 0 {
            return;
        }
        let rank = self.out.len();
        if rank == 0 {
            f(0, 0, 0);
            return;
        }
        let [sa, sb] = &self.strides;
        let inner = self.out[rank - 1];
        let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
        let mut index = vec![0usize; rank - 1];
        let (mut base_a, mut base_b) = (0usize, 0usize);
        let mut i = 0;
        while i < total {
            for j in 0..inner {
                f(i + j, base_a + j * ia, base_b + j * ib);
            }
            i += inner;
            // Advance the odometer over the outer dims.
            for d in (0..rank - 1).rev() {
                index[d] += 1;
                base_a += sa[d];
                base_b += sb[d];
                if index[d] < self.out[d] {
                    break;
                }
                base_a -= sa[d] * self.out[d];
                base_b -= sb[d] * self.out[d];
                index[d] = 0;
            }
        }
    }
}

/// The most output dims the GPU's broadcast kernels take (`BROADCAST_MAX_RANK`
/// in `kernels/src/elementwise.cu`); thaw's tensors have at most 4.
pub(crate) const GPU_MAX_RANK: usize = 8;

/// A [`Plan`] as the GPU's broadcast kernels read it, passed by value to
/// `add_broadcast_f32`, `mul_broadcast_f32` and `broadcast_reduce*_f32`: the
/// same layout as `struct BroadcastIndex` in `kernels/src/elementwise.cu`
/// (C layout: `rank`, 4 bytes of padding, then the u64 arrays).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BroadcastIndex {
    /// Number of output dims in use.
    pub rank: u32,
    /// The output's dims (unused entries 1).
    pub out: [u64; GPU_MAX_RANK],
    /// Each operand's stride over each output dim (0 where broadcast).
    pub strides: [[u64; GPU_MAX_RANK]; 2],
}

// SAFETY: a plain `#[repr(C)]` struct of integers, the layout of the kernels' struct.
unsafe impl crate::cuda::cudarc::driver::DeviceRepr for BroadcastIndex {}

impl Plan {
    /// The plan for the GPU kernels, or an error naming `op` for an output
    /// of more than [`GPU_MAX_RANK`] dims.
    pub(crate) fn gpu_index(&self, op: &'static str) -> Result<BroadcastIndex> {
        let rank = self.out.len();
        if rank > GPU_MAX_RANK {
            return Err(Error::unsupported(
                op,
                format!(
                    "on the GPU, broadcasting takes at most {GPU_MAX_RANK} dims; the output {:?} \
                     has {rank}: reshape to fewer dims or run on the CPU",
                    self.out
                ),
            ));
        }
        let mut index = BroadcastIndex {
            rank: rank as u32,
            out: [1; GPU_MAX_RANK],
            strides: [[0; GPU_MAX_RANK]; 2],
        };
        for d in 0..rank {
            index.out[d] = self.out[d] as u64;
            for side in 0..2 {
                index.strides[side][d] = self.strides[side][d] as u64;
            }
        }
        Ok(index)
    }
}

/// `f(a, b)` elementwise over the broadcast output.
pub(crate) fn zip_with<T: Element>(
    plan: &Plan,
    a: &[T],
    b: &[T],
    f: impl Fn(T, T) -> T + Sync,
) -> Vec<T> {
    if numel(&plan.out) == 0 {
        return Vec::new(); // (and `chunks(0)` below would panic)
    }
    match plan.layout {
        // The two layouts of a network's adds (residual, bias): over rayon.
        Layout::Same => parallel::zip(a, b, f),
        Layout::Repeats(1) => parallel::zip_rows(a, b, |x, &y| f(x, y)),
        Layout::Repeats(_) => {
            let mut out = Vec::with_capacity(b.len());
            for row in b.chunks(a.len()) {
                out.extend(a.iter().zip(row).map(|(&x, &y)| f(x, y)));
            }
            out
        }
        Layout::Strided => {
            let mut out = vec![T::ZERO; numel(&plan.out)];
            plan.walk(|i, ia, ib| out[i] = f(a[ia], b[ib]));
            out
        }
    }
}

/// The gradient of operand `side` (0 = a, 1 = b) of length `len`: the sum,
/// over the output positions that read each of its elements, of
/// `dy · other` (`other` is the other operand for mul, `None` for add).
/// Sums are accumulated in f64 in row-major output order, so the result is
/// deterministic and f32 bias gradients over large batches stay accurate.
pub(crate) fn reduce_to<T: Element>(
    plan: &Plan,
    side: usize,
    len: usize,
    dy: &[T],
    other: Option<&[T]>,
) -> Vec<T> {
    let term = |i: usize, o: usize| -> f64 {
        match other {
            Some(v) => (dy[i] * v[o]).to_f64(),
            None => dy[i].to_f64(),
        }
    };
    if len == dy.len() && (other.is_none() || plan.strides[side] == plan.strides[1 - side]) {
        // Not broadcast, and the other operand (if any) is read at the same
        // offset: elementwise, over rayon as the forward's `Layout::Same`.
        return match other {
            Some(v) => parallel::zip(dy, v, |g, x| g * x),
            None => parallel::map(dy, |g| g),
        };
    }
    let mut acc = vec![0f64; len];
    plan.walk(|i, ia, ib| {
        let (mine, theirs) = if side == 0 { (ia, ib) } else { (ib, ia) };
        acc[mine] += term(i, theirs);
    });
    acc.into_iter().map(T::from_f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_pick_the_fast_layouts_and_stride_0_on_broadcast_dims() {
        let p = plan("mul", &[2, 3, 4], &[2, 3, 4]).unwrap();
        assert_eq!(p.layout, Layout::Same);
        let p = plan("mul", &[2, 5, 5, 3], &[3]).unwrap();
        assert_eq!(
            (p.layout, p.strides[1].clone()),
            (Layout::Repeats(1), vec![0, 0, 0, 1])
        );
        let p = plan("mul", &[1, 3], &[4, 3]).unwrap();
        assert_eq!(p.layout, Layout::Repeats(0));
        let p = plan("mul", &[2, 1, 4], &[3, 1]).unwrap();
        assert_eq!(p.out, vec![2, 3, 4]);
        assert_eq!(p.layout, Layout::Strided);
        assert_eq!(p.strides, [vec![4, 0, 1], vec![0, 1, 0]]);
        let e = plan("mul", &[2, 3], &[4]).unwrap_err().to_string();
        assert!(
            e.contains("do not broadcast") && e.contains("[2, 3]"),
            "{e}"
        );
    }

    #[test]
    fn the_gpu_index_carries_the_plan_and_refuses_too_many_dims() {
        let p = plan("mul", &[2, 1, 4], &[3, 1]).unwrap();
        let g = p.gpu_index("mul").unwrap();
        assert_eq!(g.rank, 3);
        assert_eq!(g.out, [2, 3, 4, 1, 1, 1, 1, 1]);
        assert_eq!(g.strides[0][..3], [4, 0, 1]);
        assert_eq!(g.strides[1][..3], [0, 1, 0]);
        // The kernels' C struct: u32 rank, 4 bytes of padding, 3 arrays of 8 u64.
        assert_eq!(std::mem::size_of::<BroadcastIndex>(), 8 + 3 * 8 * 8);
        // A scalar times a scalar: rank 0, one element.
        assert_eq!(
            plan("mul", &[], &[])
                .unwrap()
                .gpu_index("mul")
                .unwrap()
                .rank,
            0
        );
        let nine = [1usize; 9];
        let e = plan("mul", &nine, &[1])
            .unwrap()
            .gpu_index("mul")
            .unwrap_err()
            .to_string();
        assert!(e.contains("at most 8 dims") && e.contains("CPU"), "{e}");
    }
}
