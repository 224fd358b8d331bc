//! The one pass over a string before any detector runs: which kinds of bytes it holds. A
//! detector runs only when the string holds what it needs to match (the PII detectors a digit,
//! an `@`, a secret's first two bytes or a non-ASCII character that may fold into one of
//! those; the SSRF detector a `:`, `/`, `\`, `.` or the `lh`/`p6` of a dotless loopback
//! name), so a string with nothing of interest costs this pass alone.
//!
//! Each byte is looked up in two small tables: its own class, and the pairs it may start or
//! end (so `gh` or `ey` sets the secret bit, where a lone `g` or `e` in English prose does
//! not).

/// Byte classes.
const DIGIT: u8 = 1;
const AT: u8 = 2;
/// `:`, `/` or `\`.
const URL: u8 = 4;
const DOT: u8 = 8;
const NON_ASCII: u8 = 16;

/// Pair groups: a byte of `FIRST[group]` followed by one of `SECOND[group]`.
const PAIRS: [(&[u8], &[u8]); 8] = [
    (b"A", b"KSGIRNBCP"), // AWS access key ids: AKIA, ASIA, AGPA, ...
    (b"-", b"-"),         // -----BEGIN ... PRIVATE KEY-----
    (b"Bb", b"Ee"),       // Bearer
    (b"e", b"y"),         // eyJ... (JWT)
    (b"g", b"h"),         // ghp_, gho_, ... (GitHub)
    (b"b", b"_"),         // github_pat_
    (b"x", b"o"),         // xoxb-, ... (Slack)
    (b"LlPp", b"Hh6"),    // localhost, ip6-loopback (dotless loopback names)
];
/// The pair group of the dotless loopback names; the others are secrets.
const LOOPBACK_PAIR: u8 = 1 << 7;

struct Tables {
    class: [u8; 256],
    first: [u8; 256],
    second: [u8; 256],
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
    pairs: u8,
}

impl Gate {
    /// One pass over `text`.
    pub fn of(text: &str) -> Gate {
        let t = &TABLES;
        let (mut class, mut pairs, mut prev) = (0u8, 0u8, 0u8);
        for &b in text.as_bytes() {
            class |= t.class[usize::from(b)];
            pairs |= t.first[usize::from(prev)] & t.second[usize::from(b)];
            prev = b;
        }
        Gate { class, pairs }
    }

    /// The PII and secret detectors may match.
    pub fn pii(self) -> bool {
        self.class & (DIGIT | AT | NON_ASCII) != 0 || self.pairs & !LOOPBACK_PAIR != 0
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

#[cfg(test)]
mod tests {
    use super::*;

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
