//! How the process allocator treats tensor-sized buffers on the CPU backends.
//!
//! burn's CPU backends allocate a fresh buffer for every tensor an operation
//! produces (flex zeroes it first, and copies it once to align it): a
//! training step allocates and frees hundreds of megabytes in buffers of
//! 0.1-40 MB. glibc's default `malloc` serves buffers above a threshold
//! (128 KiB, raised dynamically up to 32 MiB after the first frees) with
//! fresh `mmap`s, and gives the top of the heap back to the system past a
//! trim threshold, so much of that memory is faulted in page by page again
//! and again. [`keep_tensor_buffers`] fixes both thresholds: buffers up to
//! 32 MiB come from the heap and freed memory stays with the process for the
//! next step. Measured on the RT step (BENCHMARKS.md): minor page faults of a
//! run fall about twofold, a 896x384x1536 flex matmul (its 5.5 MB output
//! freshly allocated each time) runs in 6.5 ms instead of 11.7, and the
//! evaluation after two data-parallel CPU workers is no longer 50 % slower
//! than after one. The peak resident memory does not change (the process
//! keeps what it used at its peak either way).
//!
//! The `mlora` binary calls it at start. It changes process-wide settings,
//! so a library leaves it to the application: call it once, first thing in
//! `main`, in a program that trains on flex or ndarray.

/// Sets glibc's `M_MMAP_THRESHOLD` to 32 MiB (its maximum) and
/// `M_TRIM_THRESHOLD` to 1 GiB; `false` where that is not possible (another
/// C library or system, or glibc refused a value).
///
/// ```
/// // first thing in `main` of a program that trains on the CPU
/// let tuned = matryoshka_lora::host_memory::keep_tensor_buffers();
/// assert_eq!(tuned, cfg!(all(target_os = "linux", target_env = "gnu")));
/// ```
pub fn keep_tensor_buffers() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is safe to
        // call at any time (glibc serialises it with allocations).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
