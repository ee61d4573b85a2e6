//! Short byte copies for the hash kernels' output buffers (a leaf: no other module of the
//! crate is used here).

/// Appends `bytes` to `out`: a plain `extend_from_slice` calls `memcpy` for every value, which
/// for the few bytes of a hash part or a rendering costs more than the copy; within the
/// reserved capacity this copies short values with a few unaligned word moves instead.
#[inline(always)]
pub(crate) fn extend_small(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = out.len();
    let n = bytes.len();
    if n > 64 || out.capacity() - len < n {
        out.extend_from_slice(bytes);
        return;
    }
    // SAFETY: `out` has room for `n` more bytes (checked above); `copy_short` reads only
    // `bytes[..n]` and writes only the `n` bytes after `out`'s end, which are then initialised.
    unsafe {
        copy_short(bytes.as_ptr(), n, out.as_mut_ptr().add(len));
        out.set_len(len + n);
    }
}

/// Copies `n ≤ 64` bytes from `src` to `dst` with (overlapping) unaligned moves of 16, 8, 4
/// bytes, or byte by byte under 4.
///
/// # Safety
/// `src` must be valid for reads of `n` bytes, `dst` for writes of `n` bytes, and they must
/// not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, n: usize, dst: *mut u8) {
    use std::ptr::{read_unaligned, write_unaligned};
    // SAFETY: the caller's contract (`# Safety` above): every access stays within `n` bytes.
    unsafe {
        if n >= 16 {
            let mut k = 0;
            while k + 16 <= n {
                write_unaligned(
                    dst.add(k).cast::<u128>(),
                    read_unaligned(src.add(k).cast::<u128>()),
                );
                k += 16;
            }
            if k < n {
                let last = n - 16;
                write_unaligned(
                    dst.add(last).cast::<u128>(),
                    read_unaligned(src.add(last).cast::<u128>()),
                );
            }
        } else if n >= 8 {
            write_unaligned(dst.cast::<u64>(), read_unaligned(src.cast::<u64>()));
            let last = n - 8;
            write_unaligned(
                dst.add(last).cast::<u64>(),
                read_unaligned(src.add(last).cast::<u64>()),
            );
        } else if n >= 4 {
            write_unaligned(dst.cast::<u32>(), read_unaligned(src.cast::<u32>()));
            let last = n - 4;
            write_unaligned(
                dst.add(last).cast::<u32>(),
                read_unaligned(src.add(last).cast::<u32>()),
            );
        } else {
            for k in 0..n {
                *dst.add(k) = *src.add(k);
            }
        }
    }
}
