//! The first eight decimal digits of eight u64s at once, one value per 64-bit lane of an
//! AVX-512 register (a leaf: no other module of the crate is used here).
//!
//! metaxy keeps the first eight characters of a hash's decimal rendering by default (its
//! minimum truncation). One at a time ([`crate::algorithm`]'s `append_decimal_prefix`), that
//! is a chain of dependent multiplies per value, about as long as hashing the value's string
//! with the eight-lane XXH64. Here the eight values go through the same steps together:
//!
//! 1. how many digits beyond the eighth a value has (`c`, 0..=12): guessed from its bit length
//!    (leading-zero count), then one comparison with a power of ten from a table;
//! 2. its first eight digits `q = value / 10^c`: the value times the reciprocal of 10^c in
//!    `f64` (within 10^-7 of the true quotient), truncated, then corrected by one either way
//!    from the exact integer remainder `value - q * 10^c`;
//! 3. `q`'s eight digits as ASCII bytes of one word: split 4+4, 2+2 in each half, 1+1 in each
//!    quarter, each split a multiplication by a reciprocal, in lanes of the word (as
//!    `append_decimal_prefix` does in one).
//!
//! A value below 10^7 has fewer than eight digits; [`append_first8_x8`] leaves such a block to
//! the caller (one in about 2·10^12 random hashes).

/// Whether [`append_first8_x8`] runs on this CPU (AVX-512F, DQ and CD, checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512cd")
    })
}

/// Whether [`append_first8_x8`] runs on this CPU: never off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn available() -> bool {
    false
}

/// Appends the first eight decimal digits of each of `values`, in order (64 bytes), and
/// returns true; or, when a value has fewer than eight digits, appends nothing and returns
/// false. Byte for byte `&value.to_string()[..8]` of each.
///
/// # Panics
/// When [`available`] is false.
pub(crate) fn append_first8_x8(values: &[u64; 8], out: &mut Vec<u8>) -> bool {
    assert!(available(), "append_first8_x8 needs AVX-512F, DQ and CD");
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has the features (asserted above).
        unsafe { x86::append_first8_x8(values, out) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("not available off x86-64")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    /// 10^k for k in 0..=12 (the divisors), then padding.
    static POWERS: [u64; 16] = powers(0);
    /// 10^(k+7) for k in 0..=12 (the thresholds of one more digit), then padding.
    static THRESHOLDS: [u64; 16] = powers(7);
    /// The f64 nearest to 10^-k for k in 0..=12, as bits, then padding.
    static RECIPROCALS: [u64; 16] = {
        let mut table = [0u64; 16];
        let mut k = 0;
        while k <= 12 {
            table[k] = (1.0 / POWERS[k] as f64).to_bits();
            k += 1;
        }
        table
    };

    const fn powers(from: u32) -> [u64; 16] {
        let mut table = [0u64; 16];
        let mut k = 0;
        while k <= 12 {
            table[k] = 10u64.pow(from + k as u32);
            k += 1;
        }
        table
    }

    #[target_feature(enable = "avx512f,avx512dq,avx512cd")]
    #[inline]
    fn splat(v: u64) -> __m512i {
        _mm512_set1_epi64(v as i64)
    }

    /// `a * b` in every lane (the low 64 bits).
    #[target_feature(enable = "avx512f,avx512dq,avx512cd")]
    #[inline]
    fn mul(a: __m512i, b: u64) -> __m512i {
        _mm512_mullo_epi64(a, splat(b))
    }

    /// Splits every lane of `x` in two, each part of it into its quotient by `base` (`x * m >>
    /// SHIFT`, kept by `mask`) in the low half and its remainder in the high half (`LANE` bits
    /// up): one step of turning a number into its digits.
    #[target_feature(enable = "avx512f,avx512dq,avx512cd")]
    #[inline]
    fn split<const SHIFT: u32, const LANE: u32>(
        x: __m512i,
        m: u64,
        mask: u64,
        base: u64,
    ) -> __m512i {
        let high = _mm512_and_si512(_mm512_srli_epi64::<SHIFT>(mul(x, m)), splat(mask));
        _mm512_or_si512(
            _mm512_slli_epi64::<LANE>(_mm512_sub_epi64(x, mul(high, base))),
            high,
        )
    }

    /// See [`super::append_first8_x8`].
    ///
    /// # Safety
    /// The CPU must have AVX-512F, DQ and CD.
    #[target_feature(enable = "avx512f,avx512dq,avx512cd")]
    pub(super) unsafe fn append_first8_x8(values: &[u64; 8], out: &mut Vec<u8>) -> bool {
        // SAFETY: `values` is 64 readable bytes.
        let v = unsafe { _mm512_loadu_si512(values.as_ptr().cast()) };
        if _mm512_cmplt_epu64_mask(v, splat(10_000_000)) != 0 {
            return false;
        }
        let (zero, one) = (_mm512_setzero_si512(), splat(1));
        // 1. The digits beyond the eighth: with `bits` = 63 - leading zeros (2^bits <= v <
        // 2^(bits+1)) and t = floor(bits * log10 2) (bits * 1233 >> 12 below 2^12), v has
        // t + 1 or t + 2 digits, the second when v >= 10^(t+1). t >= 6 (v >= 10^7).
        let bits = _mm512_sub_epi64(splat(63), _mm512_lzcnt_epi64(v));
        let t = _mm512_srli_epi64::<12>(_mm512_mul_epu32(bits, splat(1233)));
        // SAFETY: each table is 128 readable bytes.
        let table = |t: &[u64; 16]| unsafe {
            (
                _mm512_loadu_si512(t.as_ptr().cast()),
                _mm512_loadu_si512(t[8..].as_ptr().cast()),
            )
        };
        let index = _mm512_sub_epi64(t, splat(6));
        let (low, high) = table(&THRESHOLDS);
        let longer = _mm512_cmpge_epu64_mask(v, _mm512_permutex2var_epi64(low, index, high));
        // extra = t - 7, or t - 6 when longer (0..=12).
        let extra = _mm512_mask_add_epi64(_mm512_sub_epi64(index, one), longer, index, zero);
        // 2. q = v / 10^extra: the rounded value times the rounded reciprocal is within
        // 10^-7 of the true quotient (below 10^8, relative error under 2^-51), so its
        // truncation is off by at most one, which the remainder shows.
        let (low, high) = table(&POWERS);
        let divisor = _mm512_permutex2var_epi64(low, extra, high);
        let (low, high) = table(&RECIPROCALS);
        let reciprocal = _mm512_castsi512_pd(_mm512_permutex2var_epi64(low, extra, high));
        let quotient = _mm512_mul_pd(_mm512_cvtepu64_pd(v), reciprocal);
        let mut q = _mm512_cvttpd_epu64(quotient);
        // The remainder, wrapped: negative (as i64; |error| < 10^12) when q is one too many,
        // at least the divisor when one too few.
        let rest = _mm512_sub_epi64(v, _mm512_mullo_epi64(q, divisor));
        let over = _mm512_cmplt_epi64_mask(rest, zero);
        let under = _mm512_cmpge_epi64_mask(rest, divisor);
        q = _mm512_mask_sub_epi64(q, over, q, one);
        q = _mm512_mask_add_epi64(q, under, q, one);
        // 3. q's eight digits (below 10^8, so every product below fits a lane). 32-bit lanes:
        // the first four, then the last four (q * 109951163 >> 40 is q / 10^4 below 4.9·10^8).
        let high4 = _mm512_srli_epi64::<40>(_mm512_mul_epu32(q, splat(109_951_163)));
        let halves = _mm512_or_si512(
            high4,
            _mm512_slli_epi64::<32>(_mm512_sub_epi64(q, mul(high4, 10_000))),
        );
        // 16-bit lanes: each half's first two digits (x * 10486 >> 20 is x / 100 below
        // 10^4), then its last two; 8-bit lanes: each pair's tens (x * 103 >> 10 is x / 10
        // below 100), then its units.
        let pairs = split::<20, 16>(halves, 10_486, 0x0000_007F_0000_007F, 100);
        let digits = split::<10, 8>(pairs, 103, 0x000F_000F_000F_000F, 10);
        let ascii = _mm512_add_epi64(digits, splat(0x3030_3030_3030_3030));
        out.reserve(64);
        // SAFETY: `out` has room for 64 more bytes (reserved above), all written here.
        unsafe {
            let len = out.len();
            _mm512_storeu_si512(out.as_mut_ptr().add(len).cast(), ascii);
            out.set_len(len + 64);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{append_first8_x8, available};

    /// Checks eight values against `to_string`, or that the block is refused when one has
    /// fewer than eight digits.
    fn check(values: [u64; 8]) {
        let mut out = b"x".to_vec();
        let taken = append_first8_x8(&values, &mut out);
        if values.iter().any(|&v| v < 10_000_000) {
            assert!(!taken, "{values:?}");
            assert_eq!(out, b"x");
            return;
        }
        assert!(taken, "{values:?}");
        let mut want = b"x".to_vec();
        for v in values {
            want.extend_from_slice(&v.to_string().as_bytes()[..8]);
        }
        assert_eq!(
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn first_eight_digits_match_to_string() {
        if !available() {
            eprintln!("no AVX-512F/DQ/CD on this CPU: the eight-lane rendering is not used");
            return;
        }
        // Every power of ten from 10^7 and its neighbours, every power of two from 2^23 and
        // its neighbours (where the digit count guessed from the bit length changes), values
        // next to a multiple of each divisor (where a rounded quotient would be off by one),
        // and the extremes.
        let mut edges = vec![u64::MAX, u64::MAX - 1, 9_999_999, 10_000_000];
        for k in 23..64 {
            let p = 1u64 << k;
            edges.extend([p - 1, p, p + 1]);
        }
        for k in 7..=19u32 {
            let p = 10u64.pow(k);
            edges.extend([p - 1, p, p + 1]);
            for m in [1u64, 7, 99_999_999, 12_345_678] {
                if let Some(base) = m.checked_mul(p / 10_000_000) {
                    edges.extend([base.saturating_sub(1), base, base.saturating_add(1)]);
                }
            }
        }
        for chunk in edges.chunks(8) {
            let mut values = [10_000_000u64; 8];
            values[..chunk.len()].copy_from_slice(chunk);
            check(values);
            values.rotate_left(3);
            check(values);
        }
        // Pseudo-random values over the whole range and over each digit count.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..100_000 {
            check(std::array::from_fn(|_| next()));
            check(std::array::from_fn(|_| {
                let digits = 8 + (next() % 12) as u32;
                10u64.pow(digits - 1) + next() % (9 * 10u64.pow(digits - 1))
            }));
        }
    }
}
