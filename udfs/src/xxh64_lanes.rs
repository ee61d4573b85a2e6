//! XXH64 (seed 0) of eight byte strings at once, one string per 64-bit lane of an AVX-512
//! register (a leaf: no other module of the crate is used here).
//!
//! XXH64 is bound by its 64-bit multiplies: a scalar core does one per cycle, two per 8 input
//! bytes, and each string's last steps (the merge of the accumulators, the tail, the final mix)
//! are one long chain of dependent multiplies. With AVX-512 (`vpmullq`) the eight strings go
//! through every step together, lane `r` of each register holding string `r`. Each 32-byte
//! stripe of the eight is loaded as four 256-bit rows and transposed in registers (a gather per
//! word was no faster than scalar code); a string without that stripe (it is shorter than
//! another) reads zeros and its lane is left unchanged under a mask. The tail under 32 bytes is
//! loaded the same way, 32 bytes from where each string's stripes end (hence the 32 readable
//! bytes [`xxh64_x8`] needs after the strings), and its 8-byte words, 4-byte word and bytes are
//! taken from those registers under masks: no gather, no per-string code. The strings may have
//! any lengths (metaxy's value strings differ by a byte or two). The result is XXH64 bit for
//! bit; where the CPU lacks AVX-512F/DQ, [`available`] is false and callers hash one string at
//! a time.

/// Whether [`xxh64_x8`] runs on this CPU (checked once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn available() -> bool {
    use std::sync::OnceLock;
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
    })
}

/// Whether [`xxh64_x8`] runs on this CPU: never off x86-64.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn available() -> bool {
    false
}

/// The bytes after the last string that [`xxh64_x8`] may read (and ignores).
pub(crate) const SLACK: usize = 32;

/// The XXH64 (seed 0) of the eight strings `block[bounds[r]..bounds[r + 1]]`, in order. The
/// strings lie back to back, and `block` has [`SLACK`] more bytes after the last one.
///
/// # Panics
/// When [`available`] is false, when `bounds` decreases, or when `block` is shorter than
/// `bounds[8] + SLACK`.
pub(crate) fn xxh64_x8(block: &[u8], bounds: &[usize; 9]) -> [u64; 8] {
    assert!(available(), "xxh64_x8 needs AVX-512F and AVX-512DQ");
    assert!(
        bounds.windows(2).all(|w| w[0] <= w[1]) && bounds[8] + SLACK <= block.len(),
        "xxh64_x8: strings out of the block"
    );
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the CPU has the features; every string lies in `block` followed by at least
        // SLACK bytes of it (both asserted above).
        unsafe { x86::xxh64_x8(block.as_ptr(), bounds) }
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("not available off x86-64")
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    const P1: u64 = 0x9E37_79B1_85EB_CA87;
    const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    const P3: u64 = 0x1656_67B1_9E37_79F9;
    const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    const P5: u64 = 0x27D4_EB2F_1656_67C5;

    /// What a string without the stripe being hashed reads instead.
    static ZEROS: [u8; 32] = [0; 32];

    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    fn splat(v: u64) -> __m512i {
        _mm512_set1_epi64(v as i64)
    }

    /// `a * b + c` in every lane (wrapping).
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    fn mul_add(a: __m512i, b: u64, c: u64) -> __m512i {
        _mm512_add_epi64(_mm512_mullo_epi64(a, splat(b)), splat(c))
    }

    /// XXH64's round: `acc = rotl(acc + input * P2, 31) * P1`, in every lane.
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    fn round(acc: __m512i, input: __m512i) -> __m512i {
        let acc = _mm512_add_epi64(acc, _mm512_mullo_epi64(input, splat(P2)));
        _mm512_mullo_epi64(_mm512_rol_epi64::<31>(acc), splat(P1))
    }

    /// The 32 bytes at each of the eight addresses, transposed: word `k` of register `k` lane
    /// `r` is the `k`th 8-byte word at address `r`.
    ///
    /// # Safety
    /// Every address must be valid for reads of 32 bytes.
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    unsafe fn stripe(at: [*const u8; 8]) -> [__m512i; 4] {
        // `[the 32 bytes at lo | those at hi]`.
        // SAFETY: called with addresses of `at` only, each valid for 32 bytes (`# Safety`).
        let pair = |lo: *const u8, hi: *const u8| unsafe {
            let lo = _mm256_loadu_si256(lo.cast());
            let hi = _mm256_loadu_si256(hi.cast());
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        };
        let (z0, z1, z2, z3) = (
            pair(at[0], at[4]),
            pair(at[1], at[5]),
            pair(at[2], at[6]),
            pair(at[3], at[7]),
        );
        // [0.w0 1.w0 0.w2 1.w2 4.w0 5.w0 4.w2 5.w2], [0.w1 1.w1 0.w3 …], …
        let u0 = _mm512_unpacklo_epi64(z0, z1);
        let u1 = _mm512_unpackhi_epi64(z0, z1);
        let u2 = _mm512_unpacklo_epi64(z2, z3);
        let u3 = _mm512_unpackhi_epi64(z2, z3);
        // Words 0 and 2 (`even`), 1 and 3 (`odd`) of addresses 0..7, in address order.
        let even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        [
            _mm512_permutex2var_epi64(u0, even, u2),
            _mm512_permutex2var_epi64(u1, even, u3),
            _mm512_permutex2var_epi64(u0, odd, u2),
            _mm512_permutex2var_epi64(u1, odd, u3),
        ]
    }

    /// XXH64 (seed 0) of `block[bounds[r]..bounds[r + 1]]` for each `r`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512DQ; `bounds` must not decrease, and `block` must
    /// be valid for reads up to `bounds[8] + SLACK`.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn xxh64_x8(block: *const u8, bounds: &[usize; 9]) -> [u64; 8] {
        let lens: [usize; 8] = std::array::from_fn(|r| bounds[r + 1] - bounds[r]);
        // SAFETY: each string starts within the block.
        let starts: [*const u8; 8] = std::array::from_fn(|r| unsafe { block.add(bounds[r]) });
        let shortest = lens.iter().copied().min().unwrap_or(0);
        let longest = lens.iter().copied().max().unwrap_or(0);
        let len = _mm512_set_epi64(
            lens[7] as i64,
            lens[6] as i64,
            lens[5] as i64,
            lens[4] as i64,
            lens[3] as i64,
            lens[2] as i64,
            lens[1] as i64,
            lens[0] as i64,
        );

        let mut v = [
            splat(P1.wrapping_add(P2)),
            splat(P2),
            splat(0),
            splat(0u64.wrapping_sub(P1)),
        ];
        // The stripes every string has.
        for s in 0..shortest / 32 {
            // SAFETY: `32 * s + 32 <= shortest`: within every string.
            let words = unsafe { stripe(starts.map(|p| p.add(32 * s))) };
            for (acc, word) in v.iter_mut().zip(words) {
                *acc = round(*acc, word);
            }
        }
        // The stripes only the longer strings have; the others read zeros, kept out by the mask.
        for s in shortest / 32..longest / 32 {
            let mut at = [ZEROS.as_ptr(); 8];
            let mut active: __mmask8 = 0;
            for r in 0..8 {
                if lens[r] >= 32 * s + 32 {
                    // SAFETY: within string `r`.
                    at[r] = unsafe { starts[r].add(32 * s) };
                    active |= 1 << r;
                }
            }
            // SAFETY: each address is a whole stripe of its string or ZEROS.
            let words = unsafe { stripe(at) };
            for (acc, word) in v.iter_mut().zip(words) {
                *acc = _mm512_mask_blend_epi64(active, *acc, round(*acc, word));
            }
        }
        let mut h = splat(P5);
        if longest >= 32 {
            let [v0, v1, v2, v3] = v;
            let mut merged = _mm512_add_epi64(
                _mm512_add_epi64(_mm512_rol_epi64::<1>(v0), _mm512_rol_epi64::<7>(v1)),
                _mm512_add_epi64(_mm512_rol_epi64::<12>(v2), _mm512_rol_epi64::<18>(v3)),
            );
            for acc in v {
                merged = mul_add(
                    _mm512_xor_si512(merged, round(_mm512_setzero_si512(), acc)),
                    P1,
                    P4,
                );
            }
            let striped = _mm512_cmpge_epu64_mask(len, splat(32));
            h = _mm512_mask_blend_epi64(striped, h, merged);
        }
        h = _mm512_add_epi64(h, len);

        // The tail after each string's stripes (under 32 bytes), loaded as one more stripe:
        // `tail[k]` holds word `k` of every tail.
        // SAFETY: a tail starts at most 31 bytes before its string's end and SLACK bytes of the
        // block follow the last string, so its 32 bytes are within the block.
        let tail = unsafe { stripe(std::array::from_fn(|r| starts[r].add(lens[r] & !31))) };
        let rest = _mm512_and_si512(len, splat(31));
        // Its whole 8-byte words.
        for (k, word) in tail.iter().enumerate().take(3) {
            let active = _mm512_cmpge_epu64_mask(rest, splat(8 * (k as u64 + 1)));
            if active == 0 {
                break;
            }
            let next = _mm512_xor_si512(h, round(_mm512_setzero_si512(), *word));
            h = _mm512_mask_blend_epi64(active, h, mul_add(_mm512_rol_epi64::<27>(next), P1, P4));
        }
        // The word holding the last `rest % 8` bytes: word `rest / 8`.
        let index = _mm512_srli_epi64::<3>(rest);
        let mut last = tail[0];
        for (k, word) in tail.iter().enumerate().skip(1) {
            let here = _mm512_cmpeq_epu64_mask(index, splat(k as u64));
            last = _mm512_mask_blend_epi64(here, last, *word);
        }
        // A 4-byte word, where at least four bytes are left.
        let four = _mm512_cmpge_epu64_mask(_mm512_and_si512(rest, splat(7)), splat(4));
        if four != 0 {
            let word = _mm512_and_si512(last, splat(0xFFFF_FFFF));
            let next = _mm512_xor_si512(h, _mm512_mullo_epi64(word, splat(P1)));
            h = _mm512_mask_blend_epi64(four, h, mul_add(_mm512_rol_epi64::<23>(next), P2, P3));
            last = _mm512_mask_srli_epi64::<32>(last, four, last);
        }
        // Then up to three bytes.
        let bytes = _mm512_and_si512(rest, splat(3));
        for j in 0..3u64 {
            let active = _mm512_cmpgt_epu64_mask(bytes, splat(j));
            if active == 0 {
                break;
            }
            let byte = _mm512_and_si512(last, splat(0xFF));
            last = _mm512_srli_epi64::<8>(last);
            let next = _mm512_xor_si512(h, _mm512_mullo_epi64(byte, splat(P5)));
            h = _mm512_mask_blend_epi64(
                active,
                h,
                _mm512_mullo_epi64(_mm512_rol_epi64::<11>(next), splat(P1)),
            );
        }

        // The final mix.
        h = _mm512_xor_si512(h, _mm512_srli_epi64::<33>(h));
        h = _mm512_mullo_epi64(h, splat(P2));
        h = _mm512_xor_si512(h, _mm512_srli_epi64::<29>(h));
        h = _mm512_mullo_epi64(h, splat(P3));
        h = _mm512_xor_si512(h, _mm512_srli_epi64::<32>(h));
        let mut out = [0u64; 8];
        // SAFETY: `out` is 64 bytes.
        unsafe { _mm512_storeu_si512(out.as_mut_ptr().cast(), h) };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{available, xxh64_x8, SLACK};

    fn random_bytes(state: &mut u64, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                *state ^= *state << 13;
                *state ^= *state >> 7;
                *state ^= *state << 17;
                *state as u8
            })
            .collect()
    }

    /// Eight strings at once, of one length (every length 0..300), of different lengths
    /// (shortest under and over one stripe, spreads of a few bytes to a few stripes) and of
    /// 5,000 random sets of lengths (every tail shape in every lane), against the xxhash-rust
    /// crate's one-at-a-time XXH64. Each set lies back to back in one buffer as the kernels lay
    /// their rows out, followed by exactly SLACK bytes.
    #[test]
    fn eight_lanes_equal_xxh64_of_each_string() {
        if !available() {
            eprintln!("no AVX-512F/DQ on this CPU: the eight-lane kernel is not used here");
            return;
        }
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut lengths: Vec<[usize; 8]> = (0..=300).map(|n| [n; 8]).collect();
        for base in [0usize, 7, 31, 32, 33, 63, 64, 95, 200, 299] {
            for spread in [1usize, 3, 8, 31, 32, 70] {
                lengths.push(std::array::from_fn(|r| {
                    base + (r * 5 + base) % (spread + 1)
                }));
            }
        }
        for _ in 0..5_000 {
            let pick = random_bytes(&mut state, 16);
            lengths.push(std::array::from_fn(|r| {
                usize::from(u16::from_le_bytes([pick[2 * r], pick[2 * r + 1]])) % 140
            }));
        }
        for lens in lengths {
            let block = random_bytes(&mut state, lens.iter().sum::<usize>() + SLACK);
            let mut bounds = [0; 9];
            for r in 0..8 {
                bounds[r + 1] = bounds[r] + lens[r];
            }
            let got = xxh64_x8(&block, &bounds);
            for (r, hash) in got.iter().enumerate() {
                let one = xxhash_rust::xxh64::xxh64(&block[bounds[r]..bounds[r + 1]], 0);
                assert_eq!(*hash, one, "lengths {lens:?}, string {r}");
            }
        }
    }
}
