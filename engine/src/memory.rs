//! How the process's allocator treats the large, short-lived buffers of a
//! forward pass.
//!
//! Every op returns a fresh tensor, and at 224 px the activations are large:
//! 12.8 MB for one of ResNet50's 56×56×256 outputs at batch 4. glibc's
//! `malloc` serves blocks that large with `mmap` (above its dynamic mmap
//! threshold) and gives freed memory at the top of its heap back to the
//! kernel (above its trim threshold), so the next block costs a page fault
//! and a zeroed page per 4 KiB touched.
//!
//! [`keep_freed_memory`] raises both thresholds (and turns `mmap` off for
//! blocks above the largest threshold), so freed blocks stay in the
//! heap and are handed out again, without those page faults.
//! The price is that the process keeps its peak heap: memory freed after a
//! large batch is not returned to the system until the process ends. The
//! trainer and the benchmark call it at start-up; a library user decides
//! for their own process.
//!
//! [`CacheLineAligned`], a global allocator, starts every large block on a
//! 64-byte cache line, where the system's `malloc` starts it on 16 bytes.
//! The trainer and the benchmark install it.

/// Asks glibc's `malloc` to serve every block from the heap, never from a
/// fresh `mmap`, and to keep freed memory there for reuse instead of
/// returning it to the kernel. Returns whether the allocator took all three
/// settings: false on other C libraries and systems, where nothing is changed.
///
/// The mmap threshold goes no higher than 32 MiB on 64-bit, so without
/// `M_MMAP_MAX` at 0 larger blocks (the 38.5 MB input gradient of
/// MobileNetV2's first depthwise layer at batch 8) would be mapped afresh,
/// and faulted in, on every call. With `M_MMAP_MAX` at 0 glibc still maps memory when the heap
/// cannot grow, so no allocation fails for it.
pub fn keep_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::os::raw::c_int;
        extern "C" {
            fn mallopt(param: c_int, value: c_int) -> c_int;
        }
        // From glibc's <malloc.h>.
        const M_TRIM_THRESHOLD: c_int = -1;
        const M_MMAP_THRESHOLD: c_int = -3;
        const M_MMAP_MAX: c_int = -4;
        // SAFETY: mallopt only sets the allocator's parameters; it returns
        // 0 (and changes nothing) for a value it does not accept.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1
                && mallopt(M_MMAP_MAX, 0) == 1
                && mallopt(M_TRIM_THRESHOLD, c_int::MAX) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// A global allocator that starts every block of 4 KiB or more on a
/// 64-byte cache line; smaller blocks are the system allocator's as they
/// are. Install it in a binary:
///
/// ```
/// #[global_allocator]
/// static ALLOC: engine::memory::CacheLineAligned = engine::memory::CacheLineAligned;
///
/// fn main() {
///     let activations = vec![0.0f32; 56 * 56 * 144];
///     assert_eq!(activations.as_ptr() as usize % 64, 0);
/// }
/// ```
///
/// Why: a tensor's data is a `Vec<f32>`, which the system allocator starts
/// on a 16-byte boundary. The depthwise kernels load and store 64-byte
/// vectors at multiples of 64 bytes from the start of a row, so on a
/// 16-byte boundary three in four of them straddle two cache lines.
/// Aligned, the depthwise rows ran up to 1.27x faster, none slower, in a
/// thaw against thaw A/B (`bench/results/cpu-intel-2026-12-03.md`).
///
/// A large block is taken from the system allocator 64 bytes longer than
/// asked, with its usual alignment, and handed out from the first cache
/// line boundary past its start; the block's own start is kept in the 8
/// bytes just before the address handed out. (Asking the system for a
/// 64-byte alignment instead, glibc's `memalign`, reused freed blocks so
/// much worse that a benchmark took twice the page faults.)
pub struct CacheLineAligned;

/// What [`CacheLineAligned`] aligns to, and from which block size.
const LINE: usize = 64;
const ALIGN_FROM: usize = 4096;

impl CacheLineAligned {
    /// Whether a block of this layout gets the cache-line start.
    fn aligns(layout: std::alloc::Layout) -> bool {
        layout.size() >= ALIGN_FROM && layout.align() <= std::mem::align_of::<usize>() * 2
    }

    /// The system allocator's layout for an aligned block of `layout`.
    fn padded(layout: std::alloc::Layout) -> std::alloc::Layout {
        std::alloc::Layout::from_size_align(layout.size() + LINE, layout.align())
            .expect("a block of under isize::MAX bytes, 64 more")
    }
}

// SAFETY: every block handed out lies inside the system allocator's block
// (its start at most LINE bytes in, its end inside the LINE bytes added),
// and `dealloc` frees the system's block with the layout it was taken with.
unsafe impl std::alloc::GlobalAlloc for CacheLineAligned {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if !Self::aligns(layout) {
            return unsafe { std::alloc::System.alloc(layout) };
        }
        let block = unsafe { std::alloc::System.alloc(Self::padded(layout)) };
        if block.is_null() {
            return block;
        }
        // The first line boundary past the start, with room for the start
        // before it (the system's blocks are at least 8-byte aligned).
        let offset = LINE - (block as usize % LINE);
        unsafe {
            let aligned = block.add(offset);
            aligned.cast::<*mut u8>().sub(1).write(block);
            aligned
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if !Self::aligns(layout) {
            return unsafe { std::alloc::System.dealloc(ptr, layout) };
        }
        unsafe {
            let block = ptr.cast::<*mut u8>().sub(1).read();
            std::alloc::System.dealloc(block, Self::padded(layout));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CacheLineAligned;
    use std::alloc::{GlobalAlloc, Layout};

    #[test]
    fn large_blocks_start_on_a_cache_line_and_keep_their_bytes() {
        let mut blocks = Vec::new();
        // Sizes around the threshold, and alignments up to the system's.
        for (size, align) in [(4096, 4), (4097, 1), (10_000, 8), (1 << 20, 16), (5000, 2)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a layout of nonzero size; freed below with the same.
            let p = unsafe { CacheLineAligned.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % 64, 0, "{size} bytes, align {align}");
            // SAFETY: the block is `size` bytes long.
            unsafe { std::ptr::write_bytes(p, (size % 251) as u8, size) };
            blocks.push((p, layout));
        }
        for (p, layout) in blocks {
            // SAFETY: as written above; nothing else wrote into the block.
            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == (layout.size() % 251) as u8));
            // SAFETY: allocated above with this layout.
            unsafe { CacheLineAligned.dealloc(p, layout) };
        }
    }

    #[test]
    fn small_blocks_and_large_alignments_are_the_systems() {
        for (size, align) in [(4095, 16), (64, 8), (8192, 4096)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a layout of nonzero size; freed just below.
            let p = unsafe { CacheLineAligned.alloc(layout) };
            assert!(!p.is_null() && (p as usize).is_multiple_of(align));
            // SAFETY: allocated just above with this layout.
            unsafe { CacheLineAligned.dealloc(p, layout) };
        }
    }

    /// Minor page faults of the calling thread so far (`/proc/thread-self/stat`,
    /// field 10), or None where there is no such file.
    fn minor_faults() -> Option<u64> {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
        // Fields after the command name, which is in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        rest.split(' ').nth(7)?.parse().ok()
    }

    #[test]
    fn a_freed_large_block_is_reused_without_page_faults() {
        if !super::keep_freed_memory() {
            crate::skipped("not glibc on Linux: the allocator's settings were not changed");
            return;
        }
        let Some(before) = minor_faults() else {
            crate::skipped("no /proc/thread-self/stat to count page faults");
            return;
        };
        let len = 10 << 20; // 40 MiB of f32: above the largest mmap threshold
        let touch = |v: &mut Vec<f32>| {
            for x in v.iter_mut().step_by(1024) {
                *x = 1.0;
            }
            std::hint::black_box(&v);
        };
        let mut first = vec![0f32; len];
        touch(&mut first);
        drop(first);
        let after_first = minor_faults().unwrap();
        let mut second = vec![0f32; len];
        touch(&mut second);
        let after_second = minor_faults().unwrap();
        // The first block faulted in its 10,240 pages; the second reuses them.
        assert!(after_first - before > 1000, "{before} -> {after_first}");
        assert!(
            after_second - after_first < 100,
            "the second 40 MiB block took {} page faults",
            after_second - after_first
        );
    }
}
