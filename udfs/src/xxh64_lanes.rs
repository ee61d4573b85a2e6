//! XXH64 (seed 0) of eight byte strings at once, one string per 64-bit lane of an AVX-512
//! register (a leaf: no other module of the crate is used here; xxhash-rust hashes what is
//! hashed one at a time from the start).
//!
//! XXH64 is bound by its 64-bit multiplies: a scalar core does one per cycle, two per 8 input
//! bytes. With AVX-512 (`vpmullq`) eight strings advance together through their common whole
//! 32-byte stripes, each stripe of the eight loaded as four 256-bit rows and transposed in
//! registers so that lane `r` of each accumulator holds string `r` (a gather per word was no
//! faster than scalar code); the rest of each string is finished one at a time. The result is
//! XXH64 bit for bit; where the CPU lacks AVX-512F/DQ, [`available`] is false and callers hash
//! one string at a time.

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

/// The XXH64 (seed 0) of each of the eight strings, in order. Their whole 32-byte stripes up to
/// the shortest one's last are hashed together; the rest of each (further stripes, the merge,
/// the tail and the final mix) one by one. Strings under 32 bytes are hashed one by one.
///
/// # Panics
/// When [`available`] is false.
pub(crate) fn xxh64_x8(rows: [&[u8]; 8]) -> [u64; 8] {
    assert!(available(), "xxh64_x8 needs AVX-512F and AVX-512DQ");
    let shortest = rows.iter().map(|r| r.len()).min().unwrap_or(0);
    if shortest < 32 {
        return rows.map(|r| xxhash_rust::xxh64::xxh64(r, 0));
    }
    #[cfg(target_arch = "x86_64")]
    {
        let ptrs = rows.map(<[u8]>::as_ptr);
        // SAFETY: the CPU has the features (asserted above); every string has at least
        // `shortest` bytes, and the kernel reads only their first `shortest / 32` stripes.
        let lanes = unsafe { x86::stripes_x8(ptrs, shortest / 32) };
        let done = shortest / 32 * 32;
        let mut out = [0u64; 8];
        for (r, hash) in out.iter_mut().enumerate() {
            let v = [lanes[0][r], lanes[1][r], lanes[2][r], lanes[3][r]];
            *hash = scalar::finish(v, rows[r], done);
        }
        out
    }
    #[cfg(not(target_arch = "x86_64"))]
    unreachable!("not available off x86-64")
}

/// XXH64's steps one string at a time, from a state: what follows the stripes hashed together.
mod scalar {
    pub(super) const P1: u64 = 0x9E37_79B1_85EB_CA87;
    pub(super) const P2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    pub(super) const P3: u64 = 0x1656_67B1_9E37_79F9;
    pub(super) const P4: u64 = 0x85EB_CA77_C2B2_AE63;
    pub(super) const P5: u64 = 0x27D4_EB2F_1656_67C5;

    /// The four accumulators before any stripe (seed 0).
    pub(super) fn start() -> [u64; 4] {
        [P1.wrapping_add(P2), P2, 0, 0u64.wrapping_sub(P1)]
    }

    #[inline(always)]
    fn round(acc: u64, input: u64) -> u64 {
        acc.wrapping_add(input.wrapping_mul(P2))
            .rotate_left(31)
            .wrapping_mul(P1)
    }

    #[inline(always)]
    fn word(bytes: &[u8], at: usize) -> u64 {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    }

    /// The hash of `bytes` whose stripes before byte `from` (a multiple of 32) are already in
    /// the accumulators `v`.
    pub(super) fn finish(mut v: [u64; 4], bytes: &[u8], from: usize) -> u64 {
        let n = bytes.len();
        let mut p = from;
        let mut h;
        if n >= 32 {
            while p + 32 <= n {
                for (k, acc) in v.iter_mut().enumerate() {
                    *acc = round(*acc, word(bytes, p + 8 * k));
                }
                p += 32;
            }
            h = v[0]
                .rotate_left(1)
                .wrapping_add(v[1].rotate_left(7))
                .wrapping_add(v[2].rotate_left(12))
                .wrapping_add(v[3].rotate_left(18));
            for acc in v {
                h = (h ^ round(0, acc)).wrapping_mul(P1).wrapping_add(P4);
            }
        } else {
            h = P5;
        }
        h = h.wrapping_add(n as u64);
        while p + 8 <= n {
            h ^= round(0, word(bytes, p));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            p += 8;
        }
        if p + 4 <= n {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[p..p + 4]);
            h ^= u64::from(u32::from_le_bytes(w)).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            p += 4;
        }
        for &b in &bytes[p..] {
            h ^= u64::from(b).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::scalar::{P1, P2};

    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    fn splat(v: u64) -> __m512i {
        _mm512_set1_epi64(v as i64)
    }

    /// XXH64's round: `acc = rotl(acc + input * P2, 31) * P1`, in every lane.
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    fn round(acc: __m512i, input: __m512i) -> __m512i {
        let acc = _mm512_add_epi64(acc, _mm512_mullo_epi64(input, splat(P2)));
        _mm512_mullo_epi64(_mm512_rol_epi64::<31>(acc), splat(P1))
    }

    /// `[the four words at byte p of string lo | those of string hi]`.
    ///
    /// # Safety
    /// Both strings must be valid for reads of `p + 32` bytes.
    #[target_feature(enable = "avx512f,avx512dq")]
    #[inline]
    unsafe fn row_pair(lo: *const u8, hi: *const u8, p: usize) -> __m512i {
        unsafe {
            let lo = _mm256_loadu_si256(lo.add(p).cast());
            let hi = _mm256_loadu_si256(hi.add(p).cast());
            _mm512_inserti64x4::<1>(_mm512_castsi256_si512(lo), hi)
        }
    }

    /// The four XXH64 accumulators (seed 0) of each of the eight strings after their first
    /// `stripes` 32-byte stripes: `[accumulator][string]`.
    ///
    /// # Safety
    /// The CPU must have AVX-512F and AVX-512DQ; every string must be valid for reads of
    /// `32 * stripes` bytes.
    #[target_feature(enable = "avx512f,avx512dq")]
    pub(super) unsafe fn stripes_x8(rows: [*const u8; 8], stripes: usize) -> [[u64; 8]; 4] {
        let [a, b, c, d] = super::scalar::start();
        let mut v = [splat(a), splat(b), splat(c), splat(d)];
        // Words 0 and 2 (`even`), 1 and 3 (`odd`) of strings 0..7 picked from the unpacked
        // pairs below, in string order.
        let even = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
        let odd = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
        for s in 0..stripes {
            let p = 32 * s;
            // SAFETY: `p + 32 <= 32 * stripes`, within every string (the caller's bound).
            let (z0, z1, z2, z3) = unsafe {
                (
                    row_pair(rows[0], rows[4], p),
                    row_pair(rows[1], rows[5], p),
                    row_pair(rows[2], rows[6], p),
                    row_pair(rows[3], rows[7], p),
                )
            };
            // [0.w0 1.w0 0.w2 1.w2 4.w0 5.w0 4.w2 5.w2], [0.w1 1.w1 0.w3 …], …
            let u0 = _mm512_unpacklo_epi64(z0, z1);
            let u1 = _mm512_unpackhi_epi64(z0, z1);
            let u2 = _mm512_unpacklo_epi64(z2, z3);
            let u3 = _mm512_unpackhi_epi64(z2, z3);
            v[0] = round(v[0], _mm512_permutex2var_epi64(u0, even, u2));
            v[1] = round(v[1], _mm512_permutex2var_epi64(u1, even, u3));
            v[2] = round(v[2], _mm512_permutex2var_epi64(u0, odd, u2));
            v[3] = round(v[3], _mm512_permutex2var_epi64(u1, odd, u3));
        }
        let mut out = [[0u64; 8]; 4];
        for (lanes, acc) in out.iter_mut().zip(v) {
            // SAFETY: `lanes` is 64 bytes.
            unsafe { _mm512_storeu_si512(lanes.as_mut_ptr().cast(), acc) };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::{available, scalar, xxh64_x8};

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

    /// The one-string steps alone: every length 0..300 against the xxhash-rust crate.
    #[test]
    fn scalar_steps_equal_xxh64() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..=300usize {
            let bytes = random_bytes(&mut state, len);
            let want = xxhash_rust::xxh64::xxh64(&bytes, 0);
            assert_eq!(
                scalar::finish(scalar::start(), &bytes, 0),
                want,
                "length {len}"
            );
        }
    }

    /// Eight strings at once, of one length (every length 0..300) and of different lengths
    /// (shortest under and over one stripe, spreads of a few bytes to a few stripes), against
    /// the xxhash-rust crate's one-at-a-time XXH64.
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
        for lens in lengths {
            let strings: Vec<Vec<u8>> = lens.iter().map(|&n| random_bytes(&mut state, n)).collect();
            let rows: [&[u8]; 8] = std::array::from_fn(|r| strings[r].as_slice());
            let got = xxh64_x8(rows);
            for (r, hash) in got.iter().enumerate() {
                let one = xxhash_rust::xxh64::xxh64(rows[r], 0);
                assert_eq!(*hash, one, "lengths {lens:?}, string {r}");
            }
        }
    }
}
