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

#[cfg(test)]
mod tests {
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
