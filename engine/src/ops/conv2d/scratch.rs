//! Reusable scratch memory for conv2d's `col` and `dcol` matrices.
//!
//! A fresh multi-megabyte vector costs a page fault per 4 KiB on first touch
//! (a visible share of a VGG16 forward pass on the CPU), so each thread keeps up to
//! two buffers between calls and hands them out again. They are bounded by
//! [`super::cpu::COL_BUDGET_BYTES`] in total, and their old contents are never
//! read: im2col writes every element and the GEMM writes `dcol` with beta = 0.

use crate::element::Element;
use std::any::Any;
use std::cell::RefCell;

/// At most this many buffers are kept per thread (backward needs two at once).
const KEPT: usize = 2;

thread_local! {
    static POOL: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A buffer of `len` elements, reused from this thread's pool when one of
/// type `T` is there. Its contents are unspecified; return it with [`give_back`].
pub fn take<T: Element>(len: usize) -> Vec<T> {
    let reused = POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let i = pool.iter().position(|b| b.is::<Vec<T>>())?;
        pool.swap_remove(i).downcast::<Vec<T>>().ok()
    });
    let mut buf = reused.map(|b| *b).unwrap_or_default();
    if buf.len() < len {
        // Growing copies nothing useful: drop the old contents first.
        buf.clear();
        buf.resize(len, T::ZERO);
    }
    buf.truncate(len);
    buf
}

/// Returns a buffer to this thread's pool (dropped if the pool is full).
pub fn give_back<T: Element>(buf: Vec<T>) {
    if buf.capacity() == 0 {
        return;
    }
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        if pool.len() < KEPT {
            pool.push(Box::new(buf));
        }
    });
}
