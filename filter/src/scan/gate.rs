//! The one pass over a string before any detector runs: which kinds of bytes it holds. A
//! detector runs only when the string holds what it needs to match (the PII detectors a digit,
//! an `@`, a secret's first two bytes or a non-ASCII character that may fold into one of
//! those; the SSRF detector a `:`, `/`, `\`, `.` or the `lh`/`p6` of a dotless loopback
//! name), so a string with nothing of interest costs this pass alone.
//!
//! Each byte is looked up in two small tables: its own class, and the pairs it may start or
//! end (so `gh` or `ey` sets the secret bit, where a lone `g` or `e` in English prose does
//! not). In the module (wasm32), whole 16-byte blocks go through the same tests with SIMD
//! instructions (`simd` below): the pass is most of the time spent on a string with nothing of
//! interest, and this takes a fraction of the byte-at-a-time loop's.

/// Byte classes.
const DIGIT: u8 = 1;
const AT: u8 = 2;
/// `:`, `/` or `\`.
const URL: u8 = 4;
const DOT: u8 = 8;
const NON_ASCII: u8 = 16;

/// Pair groups: a byte of the first set followed by one of the second. Each secret group's sets
/// are rectangles of nibbles (every high nibble of the set with every low nibble of it gives
/// a byte of the set), so the SIMD pass finds them with one table look-up per nibble; the AWS
/// prefixes are two groups for that reason.
const PAIRS: [(&[u8], &[u8]); 9] = [
    (b"A", b"BCGIKN"), // AWS access key ids: AKIA, AGPA, AIDA, ANPA, ABIA, ACCA
    (b"A", b"PRS"),    // ... APKA, AROA, ASIA
    (b"-", b"-"),      // -----BEGIN ... PRIVATE KEY-----
    (b"Bb", b"Ee"),    // Bearer
    (b"e", b"y"),      // eyJ... (JWT)
    (b"g", b"h"),      // ghp_, gho_, ... (GitHub)
    (b"b", b"_"),      // github_pat_
    (b"x", b"o"),      // xoxb-, ... (Slack)
    (b"LlPp", b"Hh6"), // localhost, ip6-loopback (dotless loopback names)
];
/// The pair group of the dotless loopback names; the others are secrets.
const LOOPBACK_PAIR: u16 = 1 << 8;
const SECRET_PAIRS: u16 = LOOPBACK_PAIR - 1;

struct Tables {
    class: [u8; 256],
    first: [u16; 256],
    second: [u16; 256],
}

static TABLES: Tables = tables();

const fn tables() -> Tables {
    let mut t = Tables {
        class: [0; 256],
        first: [0; 256],
        second: [0; 256],
    };
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t.class[b] = if c.is_ascii_digit() {
            DIGIT
        } else if c == b'@' {
            AT
        } else if c == b':' || c == b'/' || c == b'\\' {
            URL
        } else if c == b'.' {
            DOT
        } else if !c.is_ascii() {
            NON_ASCII
        } else {
            0
        };
        b += 1;
    }
    let mut g = 0;
    while g < PAIRS.len() {
        let (first, second) = PAIRS[g];
        let mut k = 0;
        while k < first.len() {
            t.first[first[k] as usize] |= 1 << g;
            k += 1;
        }
        let mut k = 0;
        while k < second.len() {
            t.second[second[k] as usize] |= 1 << g;
            k += 1;
        }
        g += 1;
    }
    t
}

/// What a string holds, as far as the detectors care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    class: u8,
    pairs: u16,
}

impl Gate {
    /// One pass over `text`.
    pub fn of(text: &str) -> Gate {
        let bytes = text.as_bytes();
        #[cfg(target_arch = "wasm32")]
        {
            // An engine without SIMD instructions refuses the whole module when loading it (V8
            // has them, in Envoy and in Node).
            let (blocks, done) = simd::blocks(bytes);
            let prev = done.checked_sub(1).and_then(|i| bytes.get(i)).copied();
            blocks.union(Gate::of_bytes(bytes.get(done..).unwrap_or_default(), prev))
        }
        #[cfg(not(target_arch = "wasm32"))]
        Gate::of_bytes(bytes, None)
    }

    /// The byte-at-a-time pass over `bytes`, which follow `prev` in the text.
    fn of_bytes(bytes: &[u8], prev: Option<u8>) -> Gate {
        let t = &TABLES;
        let (mut class, mut pairs, mut prev) = (0u8, 0u16, prev.unwrap_or(0));
        for &b in bytes {
            class |= t.class[usize::from(b)];
            pairs |= t.first[usize::from(prev)] & t.second[usize::from(b)];
            prev = b;
        }
        Gate { class, pairs }
    }

    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    fn union(self, other: Gate) -> Gate {
        Gate {
            class: self.class | other.class,
            pairs: self.pairs | other.pairs,
        }
    }

    /// The PII and secret detectors may match.
    pub fn pii(self) -> bool {
        self.class & (DIGIT | AT | NON_ASCII) != 0 || self.pairs & SECRET_PAIRS != 0
    }

    /// Non-ASCII characters are present: they may fold into ASCII the detectors read.
    pub fn non_ascii(self) -> bool {
        self.class & NON_ASCII != 0
    }

    /// The SSRF detector may match.
    pub fn ssrf(self) -> bool {
        self.urls() || self.class & DOT != 0 || self.loopback_words()
    }

    /// A URL (`scheme:`, `//host`) may start: there is a `:`, `/` or `\`.
    pub fn urls(self) -> bool {
        self.class & URL != 0
    }

    /// A dotless loopback name (`localhost`, `ip6-loopback`) may stand in the text.
    pub fn loopback_words(self) -> bool {
        self.pairs & LOOPBACK_PAIR != 0
    }
}

/// The secret pair groups by nibble: bit `g` of `lo[b & 15] & hi[b >> 4]` is set when `b` is in
/// group `g`'s set (exactly, as each set is a rectangle of nibbles; a test checks every pair).
struct NibbleTables {
    first_lo: [u8; 16],
    first_hi: [u8; 16],
    second_lo: [u8; 16],
    second_hi: [u8; 16],
}

#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
static NIBBLES: NibbleTables = nibble_tables();

/// The byte tables' secret groups projected on each byte's nibbles: as each group's sets are
/// rectangles of nibbles, the projections give back exactly those sets.
const fn nibble_tables() -> NibbleTables {
    let bytes = tables();
    let mut t = NibbleTables {
        first_lo: [0; 16],
        first_hi: [0; 16],
        second_lo: [0; 16],
        second_hi: [0; 16],
    };
    let mut b = 0;
    while b < 256 {
        let (lo, hi) = (b & 15, b >> 4);
        let first = (bytes.first[b] & SECRET_PAIRS) as u8;
        let second = (bytes.second[b] & SECRET_PAIRS) as u8;
        t.first_lo[lo] |= first;
        t.first_hi[hi] |= first;
        t.second_lo[lo] |= second;
        t.second_hi[hi] |= second;
        b += 1;
    }
    t
}

/// The gate over whole 16-byte blocks with wasm's SIMD instructions: the same classes and pairs
/// as the byte-at-a-time pass, each test applied to 16 bytes at once (the secret pairs by
/// nibble look-ups, the loopback pair by comparisons).
#[cfg(target_arch = "wasm32")]
mod simd {
    use core::arch::wasm32::*;

    use super::{Gate, AT, DIGIT, DOT, LOOPBACK_PAIR, NIBBLES, NON_ASCII, URL};

    /// The gate of the whole 16-byte blocks at the start of `bytes`, and how many bytes they
    /// hold.
    #[target_feature(enable = "simd128")]
    pub(super) fn blocks(bytes: &[u8]) -> (Gate, usize) {
        if bytes.len() < 16 {
            return (Gate { class: 0, pairs: 0 }, 0);
        }
        let t = &NIBBLES;
        // SAFETY: each table is 16 readable bytes; `v128_load` reads them unaligned.
        let table = |table: &[u8; 16]| unsafe { v128_load(table.as_ptr().cast::<v128>()) };
        let (first_lo, first_hi) = (table(&t.first_lo), table(&t.first_hi));
        let (second_lo, second_hi) = (table(&t.second_lo), table(&t.second_hi));
        let nibbles = u8x16_splat(15);
        let secrets = |lo: v128, hi: v128, v: v128| {
            v128_and(
                u8x16_swizzle(lo, v128_and(v, nibbles)),
                u8x16_swizzle(hi, u8x16_shr(v, 4)),
            )
        };
        let zero = u8x16_splat(0);
        let (mut digit, mut at, mut url, mut dot, mut high) = (zero, zero, zero, zero, zero);
        let (mut pairs, mut loopback) = (zero, zero);
        let mut prev = zero;
        let blocks = bytes.chunks_exact(16);
        let done = bytes.len() - blocks.remainder().len();
        for block in blocks {
            // SAFETY: `block` is 16 readable bytes; `v128_load` reads them unaligned.
            let v = unsafe { v128_load(block.as_ptr().cast::<v128>()) };
            // Each byte's predecessor: the last byte of the block before, then this one's.
            let p = u8x16_shuffle::<15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30>(
                prev, v,
            );
            digit = v128_or(
                digit,
                u8x16_lt(u8x16_sub(v, u8x16_splat(b'0')), u8x16_splat(10)),
            );
            at = v128_or(at, u8x16_eq(v, u8x16_splat(b'@')));
            url = v128_or(
                url,
                v128_or(
                    v128_or(
                        u8x16_eq(v, u8x16_splat(b':')),
                        u8x16_eq(v, u8x16_splat(b'/')),
                    ),
                    u8x16_eq(v, u8x16_splat(b'\\')),
                ),
            );
            dot = v128_or(dot, u8x16_eq(v, u8x16_splat(b'.')));
            high = v128_or(high, v);
            pairs = v128_or(
                pairs,
                v128_and(
                    secrets(first_lo, first_hi, p),
                    secrets(second_lo, second_hi, v),
                ),
            );
            // `l` or `p` in any case, then `h` in any case or `6`.
            let p_lower = v128_or(p, u8x16_splat(0x20));
            let first = v128_or(
                u8x16_eq(p_lower, u8x16_splat(b'l')),
                u8x16_eq(p_lower, u8x16_splat(b'p')),
            );
            let second = v128_or(
                u8x16_eq(v128_or(v, u8x16_splat(0x20)), u8x16_splat(b'h')),
                u8x16_eq(v, u8x16_splat(b'6')),
            );
            loopback = v128_or(loopback, v128_and(first, second));
            prev = v;
        }
        let any = |v: v128, bit: u8| if v128_any_true(v) { bit } else { 0 };
        let class = any(digit, DIGIT)
            | any(at, AT)
            | any(url, URL)
            | any(dot, DOT)
            | if u8x16_bitmask(high) != 0 {
                NON_ASCII
            } else {
                0
            };
        let mut lanes = [0u8; 16];
        // SAFETY: `lanes` is 16 writable bytes; `v128_store` writes them unaligned.
        unsafe { v128_store(lanes.as_mut_ptr().cast::<v128>(), pairs) };
        let secret_pairs = lanes.iter().fold(0u8, |all, &lane| all | lane);
        let loopback = if v128_any_true(loopback) {
            LOOPBACK_PAIR
        } else {
            0
        };
        let gate = Gate {
            class,
            pairs: u16::from(secret_pairs) | loopback,
        };
        (gate, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the nibble tables say of the pair `(a, b)`.
    fn by_nibbles(a: u8, b: u8) -> u16 {
        let t = &NIBBLES;
        let first = t.first_lo[usize::from(a & 15)] & t.first_hi[usize::from(a >> 4)];
        let second = t.second_lo[usize::from(b & 15)] & t.second_hi[usize::from(b >> 4)];
        u16::from(first & second)
    }

    #[test]
    fn the_nibble_tables_find_exactly_the_secret_pairs() {
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                let pairs = TABLES.first[usize::from(a)] & TABLES.second[usize::from(b)];
                assert_eq!(by_nibbles(a, b), pairs & SECRET_PAIRS, "{a:#x} {b:#x}");
            }
        }
    }

    /// Texts of every length around the blocks' size, with each trigger at each place and
    /// across a block's edge. In the module (`make test-wasm` runs these tests in V8) this
    /// checks the SIMD pass against the byte-at-a-time one.
    #[test]
    fn the_block_pass_agrees_with_the_byte_pass() {
        let filler = "Quarterly pipeline review for the enterprise accounts in the west region";
        let triggers = [
            "7", "@", ":", "/", "\\", ".", "\u{e9}", "AK", "AS", "AW", "--", "Be", "eB", "ey",
            "gh", "b_", "xo", "lh", "LH", "p6", "P6", "l6", "ph", "p", "h", "6", "\u{ff10}",
        ];
        let mut texts = Vec::new();
        for len in 0..=50 {
            let base = &filler[..len];
            texts.push(base.to_string());
            for trigger in triggers {
                for at in 0..=len {
                    if base.is_char_boundary(at) {
                        texts.push(format!("{}{trigger}{}", &base[..at], &base[at..]));
                    }
                }
            }
        }
        let all_bytes: String =
            (0..=127u8).map(char::from).collect::<String>() + "\u{80}\u{10ffff}";
        texts.push(all_bytes.repeat(3));
        for text in &texts {
            assert_eq!(
                Gate::of(text),
                Gate::of_bytes(text.as_bytes(), None),
                "{text:?}"
            );
        }
        // A pair split by a block's edge: `e` ends the first block, `y` starts the second.
        let split = format!("{}ey{}", "q".repeat(15), "q".repeat(20));
        assert!(Gate::of(&split).pii());
    }

    #[test]
    fn prose_without_digits_runs_nothing() {
        let g = Gate::of("Quarterly pipeline review for the enterprise accounts in the west");
        assert!(!g.pii() && !g.ssrf());
        assert_eq!(Gate::of(""), Gate { class: 0, pairs: 0 });
    }

    #[test]
    fn each_trigger_opens_its_detectors() {
        for s in [
            "a 1",
            "a@b",
            "AKIA",
            "-----BEGIN",
            "Bearer",
            "eyJ",
            "ghp_",
            "github_pat_",
            "xoxb",
            "é",
        ] {
            assert!(Gate::of(s).pii(), "{s}");
        }
        for s in ["a:b", "//x", "a\\b", "a.b", "LocalHost", "ip6-loopback"] {
            assert!(Gate::of(s).ssrf(), "{s}");
        }
        assert!(!Gate::of("localhost").pii());
        assert!(Gate::of("é").non_ascii() && !Gate::of("e").non_ascii());
        assert!(Gate::of("a/b").urls() && !Gate::of("a.b").urls());
    }
}
