//! The hash algorithms metaxy uses for sample provenance, rendered exactly as polars-hash 0.9.3
//! renders them once cast to a string (decimal for the integer hashes, lowercase hex for digests).

use std::fmt;
use std::str::FromStr;

use md5::Digest as _;

use crate::bytes::extend_small;
use crate::error::UdfError;

/// A hash algorithm of metaxy's `HashAlgorithm` enum that the Polars engine offers.
///
/// Each algorithm appends its textual rendering of the hash of some bytes to an output buffer,
/// byte for byte what polars-hash produces (seed 0 for the non-cryptographic hashes).
///
/// ```
/// use datafusion_metaxy_udfs::HashAlgorithm;
///
/// let mut out = Vec::new();
/// HashAlgorithm::Xxhash64.append_hash(b"abc", &mut out);
/// assert_eq!(out, b"4952883123889572249");
/// assert_eq!("sha256".parse::<HashAlgorithm>().unwrap(), HashAlgorithm::Sha256);
/// assert!("crc32".parse::<HashAlgorithm>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// XXH64, seed 0, unsigned decimal. metaxy's default.
    Xxhash64,
    /// XXH32, seed 0, unsigned decimal. The default of metaxy's Delta store.
    Xxhash32,
    /// XXH3 64-bit, seed 0, unsigned decimal (metaxy 0.1.11 and later).
    Xxh3_64,
    /// wyhash v1 (the `wyhash` crate's `wyhash(bytes, 0)`), unsigned decimal.
    Wyhash,
    /// MD5 digest, lowercase hex.
    Md5,
    /// SHA-256 digest, lowercase hex.
    Sha256,
}

impl HashAlgorithm {
    /// Every algorithm, in the order they are listed to users.
    pub const ALL: [HashAlgorithm; 6] = [
        HashAlgorithm::Xxhash64,
        HashAlgorithm::Xxhash32,
        HashAlgorithm::Xxh3_64,
        HashAlgorithm::Wyhash,
        HashAlgorithm::Md5,
        HashAlgorithm::Sha256,
    ];

    /// The name metaxy uses for the algorithm (its configuration value).
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Xxhash64 => "xxhash64",
            HashAlgorithm::Xxhash32 => "xxhash32",
            HashAlgorithm::Xxh3_64 => "xxh3_64",
            HashAlgorithm::Wyhash => "wyhash",
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha256 => "sha256",
        }
    }

    /// The longest string this algorithm renders (used to pre-size output buffers).
    pub fn max_len(self) -> usize {
        match self {
            HashAlgorithm::Xxhash64 | HashAlgorithm::Xxh3_64 | HashAlgorithm::Wyhash => 20,
            HashAlgorithm::Xxhash32 => 10,
            HashAlgorithm::Md5 => 32,
            HashAlgorithm::Sha256 => 64,
        }
    }

    /// The names of all algorithms, comma separated (for error messages).
    pub fn valid_names() -> String {
        Self::ALL.map(Self::name).join(", ")
    }

    /// Appends the rendering of the hash of `bytes` to `out`.
    #[inline]
    pub fn append_hash(self, bytes: &[u8], out: &mut Vec<u8>) {
        self.appender()(bytes, out)
    }

    /// The per-value function of this algorithm, so hot loops dispatch once, not per row.
    pub fn appender(self) -> fn(&[u8], &mut Vec<u8>) {
        match self {
            HashAlgorithm::Xxhash64 => append_xxhash64,
            HashAlgorithm::Xxhash32 => append_xxhash32,
            HashAlgorithm::Xxh3_64 => append_xxh3_64,
            HashAlgorithm::Wyhash => append_wyhash,
            HashAlgorithm::Md5 => append_md5,
            HashAlgorithm::Sha256 => append_sha256,
        }
    }

    /// The integer hash function of the algorithms rendered in decimal (`None` for the
    /// digests), so a truncated rendering can skip the digits it drops.
    pub fn integer_hasher(self) -> Option<IntegerHash> {
        match self {
            HashAlgorithm::Xxhash64 => Some(xxh64_seed0),
            HashAlgorithm::Xxhash32 => Some(xxh32_seed0),
            HashAlgorithm::Xxh3_64 => Some(xxhash_rust::xxh3::xxh3_64),
            HashAlgorithm::Wyhash => Some(wyhash_seed0),
            HashAlgorithm::Md5 | HashAlgorithm::Sha256 => None,
        }
    }

    /// The per-value renderer keeping at most `truncate_to` characters; for the decimal
    /// algorithms only the kept digits are rendered.
    pub fn renderer(self, truncate_to: Option<usize>) -> Renderer {
        Renderer {
            algorithm: self,
            truncate_to,
        }
    }

    /// Hashes `text` and returns the rendering truncated to its first `truncate_to` characters
    /// (no truncation when `None` or when the rendering is shorter).
    ///
    /// ```
    /// use datafusion_metaxy_udfs::HashAlgorithm;
    /// assert_eq!(HashAlgorithm::Md5.hash_str("abc", Some(8)), "90015098");
    /// ```
    pub fn hash_str(self, text: &str, truncate_to: Option<usize>) -> String {
        let mut out = Vec::with_capacity(self.max_len());
        self.renderer(truncate_to).render(text.as_bytes(), &mut out);
        // Every rendering is ASCII.
        String::from_utf8(out).expect("hash renderings are ASCII")
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for HashAlgorithm {
    type Err = UdfError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.trim().to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|a| a.name() == lower)
            .ok_or_else(|| UdfError::UnknownAlgorithm {
                given: s.to_string(),
                valid: Self::valid_names(),
            })
    }
}

/// An integer hash function (seed 0).
type IntegerHash = fn(&[u8]) -> u64;

/// XXH64, seed 0.
fn xxh64_seed0(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(bytes, 0)
}

/// XXH32, seed 0, widened.
fn xxh32_seed0(bytes: &[u8]) -> u64 {
    u64::from(xxhash_rust::xxh32::xxh32(bytes, 0))
}

/// wyhash v1, seed 0.
fn wyhash_seed0(bytes: &[u8]) -> u64 {
    ::wyhash::wyhash(bytes, 0)
}

/// Appends the (possibly truncated) rendering of a hash; see [`HashAlgorithm::renderer`].
/// It dispatches on the algorithm per value; the UDFs' row loops dispatch once per batch.
#[derive(Debug, Clone, Copy)]
pub struct Renderer {
    algorithm: HashAlgorithm,
    truncate_to: Option<usize>,
}

impl Renderer {
    /// Appends the rendering of the hash of `bytes` to `out`, cut to the kept length.
    #[inline]
    pub fn render(&self, bytes: &[u8], out: &mut Vec<u8>) {
        struct One<'a> {
            bytes: &'a [u8],
            out: &'a mut Vec<u8>,
        }
        impl HashKernel for One<'_> {
            type Output = ();
            fn run<R: RenderHash>(self, r: R) {
                r.render(self.bytes, self.out)
            }
        }
        self.algorithm
            .with_kernel(self.truncate_to, One { bytes, out })
    }
}

/// The per-row work of a hash kernel: hash some bytes and append the (truncated) rendering.
/// One implementation per algorithm, so that a kernel generic over it is compiled once per
/// algorithm with the hash and the rendering inlined into its row loop.
pub(crate) trait RenderHash: Copy {
    fn render(&self, bytes: &[u8], out: &mut Vec<u8>);

    /// Whether [`RenderHash::render8`] hashes eight strings at once on this CPU (faster than
    /// eight [`RenderHash::render`]s).
    fn lanes8(&self) -> bool {
        false
    }

    /// Appends the renderings of the eight strings `block[bounds[r]..bounds[r + 1]]`, one
    /// after another, setting `ends[r]` to `out`'s length after string `r`'s. `block` has
    /// [`LANES_SLACK`] bytes after the last string. Only called when [`RenderHash::lanes8`]
    /// is true; this default renders them one by one.
    fn render8(&self, block: &[u8], bounds: &[usize; 9], out: &mut Vec<u8>, ends: &mut [usize; 8]) {
        for (r, end) in ends.iter_mut().enumerate() {
            self.render(&block[bounds[r]..bounds[r + 1]], out);
            *end = out.len();
        }
    }
}

/// A row loop generic over the per-row work; run by [`HashAlgorithm::with_kernel`].
pub(crate) trait HashKernel {
    type Output;
    fn run<R: RenderHash>(self, render: R) -> Self::Output;
}

/// Eight strings hashed at once (see [`RenderHash::render8`]).
type LanesHash = fn(&[u8], &[usize; 9]) -> [u64; 8];

/// The bytes [`RenderHash::render8`]'s block has after its strings.
pub(crate) const LANES_SLACK: usize = crate::xxh64_lanes::SLACK;

/// An integer hash rendered in decimal, its first `keep` digits; `lanes`, where this CPU has
/// it, the same hash of eight strings at once.
#[derive(Clone, Copy)]
struct Decimal<H> {
    hash: H,
    keep: usize,
    lanes: Option<LanesHash>,
    /// Whether `render8` renders its eight hashes together ([`crate::decimal_lanes`]): eight
    /// digits kept, on a CPU that has the instructions.
    first8_lanes: bool,
}

impl<H: Fn(&[u8]) -> u64 + Copy> RenderHash for Decimal<H> {
    #[inline(always)]
    fn render(&self, bytes: &[u8], out: &mut Vec<u8>) {
        append_decimal_prefix((self.hash)(bytes), self.keep, out)
    }

    fn lanes8(&self) -> bool {
        self.lanes.is_some()
    }

    #[inline]
    fn render8(&self, block: &[u8], bounds: &[usize; 9], out: &mut Vec<u8>, ends: &mut [usize; 8]) {
        let hashes = match self.lanes {
            Some(lanes) => lanes(block, bounds),
            None => std::array::from_fn(|r| (self.hash)(&block[bounds[r]..bounds[r + 1]])),
        };
        let start = out.len();
        if self.first8_lanes && crate::decimal_lanes::append_first8_x8(&hashes, out) {
            for (r, end) in ends.iter_mut().enumerate() {
                *end = start + 8 * (r + 1);
            }
            return;
        }
        for (hash, end) in hashes.into_iter().zip(ends.iter_mut()) {
            append_decimal_prefix(hash, self.keep, out);
            *end = out.len();
        }
    }
}

/// A digest in hex, cut to `keep` characters (the digest dominates; no need to inline it).
#[derive(Clone, Copy)]
struct Hex {
    append: fn(&[u8], &mut Vec<u8>),
    keep: usize,
}

impl RenderHash for Hex {
    #[inline]
    fn render(&self, bytes: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        (self.append)(bytes, out);
        out.truncate(start.saturating_add(self.keep));
    }
}

impl HashAlgorithm {
    /// Runs `kernel` with this algorithm's per-row work, keeping at most `truncate_to`
    /// characters of each rendering.
    pub(crate) fn with_kernel<K: HashKernel>(
        self,
        truncate_to: Option<usize>,
        kernel: K,
    ) -> K::Output {
        let keep = truncate_to.unwrap_or(usize::MAX);
        match self {
            // Function items, not pointers: each instantiation inlines its hash.
            HashAlgorithm::Xxhash64 => kernel.run(Decimal {
                hash: xxh64_seed0,
                keep,
                lanes: crate::xxh64_lanes::available()
                    .then_some(crate::xxh64_lanes::xxh64_x8 as LanesHash),
                first8_lanes: keep == 8 && crate::decimal_lanes::available(),
            }),
            HashAlgorithm::Xxhash32 => kernel.run(Decimal {
                hash: xxh32_seed0,
                keep,
                lanes: None,
                first8_lanes: false,
            }),
            HashAlgorithm::Xxh3_64 => kernel.run(Decimal {
                hash: xxhash_rust::xxh3::xxh3_64,
                keep,
                lanes: None,
                first8_lanes: false,
            }),
            HashAlgorithm::Wyhash => kernel.run(Decimal {
                hash: wyhash_seed0,
                keep,
                lanes: None,
                first8_lanes: false,
            }),
            HashAlgorithm::Md5 => kernel.run(Hex {
                append: append_md5,
                keep,
            }),
            HashAlgorithm::Sha256 => kernel.run(Hex {
                append: append_sha256,
                keep,
            }),
        }
    }
}

/// Appends an unsigned integer in decimal (how polars renders a UInt64/UInt32 cast to String).
#[inline]
pub(crate) fn append_decimal(value: impl Into<u64>, out: &mut Vec<u8>) {
    append_decimal_prefix(value.into(), usize::MAX, out);
}

/// ASCII `'0'` in each byte of a word.
const ASCII_ZEROS: u64 = 0x3030_3030_3030_3030;

/// The eight decimal digits of `x` (below 10^8, leading zeros included) as the byte values
/// 0..=9 of a word, the most significant digit in the lowest byte (first in memory once stored
/// little-endian). The digits are split in lanes of one word (4+4, then 2+2 in each half, then
/// 1+1 in each quarter), each split a multiplication by a reciprocal: no table, no loop.
#[inline(always)]
fn decimal_digits8(x: u64) -> u64 {
    // 32-bit lanes: the first four digits, then the last four.
    let halves = (x / 10_000) | ((x % 10_000) << 32);
    // 16-bit lanes: each half's first two digits (x * 10486 >> 20 is x / 100 below 10^4), then
    // its last two.
    let high_pairs = ((halves * 10_486) >> 20) & 0x0000_007F_0000_007F;
    let pairs = ((halves - 100 * high_pairs) << 16) | high_pairs;
    // 8-bit lanes: each pair's tens (x * 103 >> 10 is x / 10 below 100), then its units.
    let tens = ((pairs * 103) >> 10) & 0x000F_000F_000F_000F;
    ((pairs - 10 * tens) << 8) | tens
}

/// Appends the first `keep` decimal digits of `value` (all of them when it has fewer): the
/// truncated rendering, byte for byte the prefix of `value.to_string()`. The (up to 20) digits
/// are made eight at a time by [`decimal_digits8`] after divisions by the constants 10^16 and
/// 10^8 (a multiply each), into a 24-byte buffer whose leading zeros are skipped; when at most
/// eight are kept of a value of 19 or 20 digits (nearly every truncated hash), only the first
/// eight are made, from the value divided by 10^11 or 10^12. Faster than `itoa` (a loop over
/// a table of digit pairs, every digit rendered), which matters: a truncated xxhash64 costs
/// about as much to render as to hash.
#[inline(always)]
pub(crate) fn append_decimal_prefix(value: u64, keep: usize, out: &mut Vec<u8>) {
    const E18: u64 = 1_000_000_000_000_000_000;
    if keep <= 8 && value >= E18 {
        // 19 or 20 digits (19 in 20 random hashes), of which at most the first eight are kept:
        // one word of digits from the value cut to eight.
        let top = if value >= 10 * E18 {
            value / 1_000_000_000_000
        } else {
            value / 100_000_000_000
        };
        let word = (decimal_digits8(top) + ASCII_ZEROS).to_le_bytes();
        extend_small(out, &word[..keep]);
        return;
    }
    let mut buf = [0u8; 24];
    let start = if value < 100_000_000 {
        let low = decimal_digits8(value);
        buf[16..].copy_from_slice(&(low + ASCII_ZEROS).to_le_bytes());
        // Zero renders as one digit.
        16 + (low.trailing_zeros() / 8).min(7) as usize
    } else {
        const E16: u64 = 10_000_000_000_000_000;
        let (high, rest) = (value / E16, value % E16);
        let words = [
            decimal_digits8(high),
            decimal_digits8(rest / 100_000_000),
            decimal_digits8(rest % 100_000_000),
        ];
        for (chunk, word) in buf.chunks_exact_mut(8).zip(words) {
            chunk.copy_from_slice(&(word + ASCII_ZEROS).to_le_bytes());
        }
        // The middle word is not zero when `high` is (the value is at least 10^8).
        match words[0] {
            0 => 8 + (words[1].trailing_zeros() / 8) as usize,
            high => (high.trailing_zeros() / 8) as usize,
        }
    };
    extend_small(out, &buf[start..buf.len().min(start.saturating_add(keep))]);
}

/// Appends a digest as lowercase hex.
#[inline]
fn append_hex(digest: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(digest.len() * 2);
    for b in digest {
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0x0f) as usize]);
    }
}

/// MD5 of the bytes, lowercase hex (polars-hash `chash.md5()`).
pub fn append_md5(bytes: &[u8], out: &mut Vec<u8>) {
    append_hex(&md5::Md5::digest(bytes), out);
}

/// SHA-256 of the bytes, lowercase hex (polars-hash `chash.sha256()`).
pub fn append_sha256(bytes: &[u8], out: &mut Vec<u8>) {
    append_hex(&sha2::Sha256::digest(bytes), out);
}

/// Appends the decimal rendering of the XXH64 (seed 0) hash of `bytes` (the per-value work of
/// `xxhash64`).
#[inline]
pub fn append_xxhash64(bytes: &[u8], out: &mut Vec<u8>) {
    append_decimal(xxhash_rust::xxh64::xxh64(bytes, 0), out);
}

/// Appends the decimal rendering of the XXH32 (seed 0) hash of `bytes` (the per-value work of
/// `xxhash32`).
#[inline]
pub fn append_xxhash32(bytes: &[u8], out: &mut Vec<u8>) {
    append_decimal(xxhash_rust::xxh32::xxh32(bytes, 0), out);
}

/// Appends the decimal rendering of the XXH3 64-bit (seed 0) hash of `bytes` (the per-value
/// work of `xxh3_64`).
#[inline]
pub fn append_xxh3_64(bytes: &[u8], out: &mut Vec<u8>) {
    append_decimal(xxhash_rust::xxh3::xxh3_64(bytes), out);
}

/// Appends the decimal rendering of the wyhash v1 (seed 0) hash of `bytes` (the per-value work
/// of `wyhash`).
#[inline]
pub fn append_wyhash(bytes: &[u8], out: &mut Vec<u8>) {
    append_decimal(::wyhash::wyhash(bytes, 0), out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_case_insensitively_and_lists_valid_ones() {
        assert_eq!(
            "XXHash32".parse::<HashAlgorithm>().unwrap(),
            HashAlgorithm::Xxhash32
        );
        let err = "farmhash".parse::<HashAlgorithm>().unwrap_err().to_string();
        assert!(err.contains("farmhash"), "{err}");
        assert!(
            err.contains("xxhash64, xxhash32, xxh3_64, wyhash, md5, sha256"),
            "{err}"
        );
    }

    #[test]
    fn decimal_renderings_match_the_standard_library() {
        // Every power of ten and its neighbours, the extremes and a typical xxhash64 value,
        // truncated to every length; then 200,000 pseudo-random values of every magnitude
        // (xorshift) to the lengths around the eight-digit words. All against `to_string`.
        let mut edges = vec![
            0,
            u64::MAX,
            u64::MAX - 1,
            u64::MAX / 10,
            4952883123889572249,
        ];
        for p in 0..20 {
            let t = 10u64.pow(p);
            edges.extend([t - 1, t, t + 1, t.saturating_mul(9)]);
        }
        let mut random = vec![];
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..100_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            random.extend([state, state >> (state % 64)]);
        }
        let every_length: Vec<usize> = (1..=21).chain([usize::MAX]).collect();
        let some_lengths = [1, 7, 8, 9, 16, 19, usize::MAX];
        let cases = edges
            .into_iter()
            .map(|v| (v, every_length.as_slice()))
            .chain(random.into_iter().map(|v| (v, some_lengths.as_slice())));
        let mut out = Vec::new();
        for (v, lengths) in cases {
            let full = v.to_string();
            for &keep in lengths {
                out.clear();
                append_decimal_prefix(v, keep, &mut out);
                assert_eq!(
                    out,
                    &full.as_bytes()[..keep.min(full.len())],
                    "{v} to {keep}"
                );
            }
            out.clear();
            append_decimal(v, &mut out);
            assert_eq!(out, full.as_bytes());
        }
    }

    #[test]
    fn integer_hashers_render_as_the_appenders() {
        for a in HashAlgorithm::ALL {
            let Some(h) = a.integer_hasher() else {
                assert!(matches!(a, HashAlgorithm::Md5 | HashAlgorithm::Sha256));
                continue;
            };
            for text in ["", "abc", "prediction|1|bench/simple_root.audio|a1"] {
                let mut out = Vec::new();
                append_decimal(h(text.as_bytes()), &mut out);
                assert_eq!(
                    String::from_utf8(out).unwrap(),
                    a.hash_str(text, None),
                    "{a}"
                );
            }
        }
    }

    #[test]
    fn known_digests() {
        // RFC 1321 and FIPS 180-2 test vectors.
        assert_eq!(
            HashAlgorithm::Md5.hash_str("abc", None),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        assert_eq!(
            HashAlgorithm::Sha256.hash_str("abc", None),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(HashAlgorithm::Sha256.hash_str("abc", Some(8)), "ba7816bf");
        assert_eq!(
            HashAlgorithm::Xxhash32.hash_str("abc", Some(100)),
            "852579327"
        );
    }
}
