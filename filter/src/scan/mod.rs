//! Content scanning: detectors over the strings of decoded JSON (tool inputs and outputs).
//! Each detector reports byte spans of the string it was given; callers turn them into
//! findings (detector + JSON path, never the value) and masks.

pub mod content;
mod gate;
pub mod pii;
pub mod settings;
pub mod ssrf;

use serde::Deserialize;

/// What a detector looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// US Social Security number.
    Ssn,
    /// Payment card number (Luhn-valid, known issuer prefix and length).
    PaymentCard,
    Email,
    /// Phone number (E.164 or NANP).
    Phone,
    /// IBAN (ISO 13616, mod-97 valid).
    Iban,
    /// Credentials: AWS access keys, private key blocks, bearer tokens and JWTs.
    Secret,
    /// A URL or host pointing at an internal, loopback, link-local or metadata address.
    Ssrf,
}

impl Detector {
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Ssn => "ssn",
            Detector::PaymentCard => "payment_card",
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::Iban => "iban",
            Detector::Secret => "secret",
            Detector::Ssrf => "ssrf",
        }
    }
}

/// One detection: `text[start..end]` (byte offsets on char boundaries) is a `detector` hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Match {
    pub detector: Detector,
    pub start: usize,
    pub end: usize,
    /// What was normalised inside the span before it matched.
    pub normalized: Normalized,
}

impl Match {
    /// A match of the text as written.
    pub fn new(detector: Detector, start: usize, end: usize) -> Match {
        Match {
            detector,
            start,
            end,
            normalized: Normalized::NONE,
        }
    }
}

/// What a detector saw normalised in a match (a set; empty when the text matched as written).
/// Recorded in the finding by name, never with the value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Normalized(u8);

impl Normalized {
    pub const NONE: Normalized = Normalized(0);
    /// Full-width digits `０`–`９` read as `0`–`9`.
    pub const FULLWIDTH_DIGITS: Normalized = Normalized(1);
    /// Decimal digits of other scripts (Unicode category Nd: Arabic-Indic `٣`, Devanagari `३`,
    /// mathematical `𝟑`, …) read as `0`–`9`.
    pub const UNICODE_DIGITS: Normalized = Normalized(2);
    /// Unicode dashes and spaces (en/em dash, minus sign, non-breaking hyphen, full-width
    /// hyphen-minus, no-break and other fixed-width spaces, ideographic space) and full-width
    /// `.` `(` `)` `+` read as their ASCII forms.
    pub const UNICODE_SEPARATORS: Normalized = Normalized(4);
    /// Full-width letters and symbols (`ＳＳＮ`, `＠`) read as ASCII.
    pub const FULLWIDTH_LETTERS: Normalized = Normalized(8);
    /// Invisible characters (zero-width space/joiners, word joiner, BOM, soft hyphen) dropped.
    pub const INVISIBLE_CHARACTERS: Normalized = Normalized(16);
    /// A wildcard-DNS name (`10.0.0.1.nip.io`, `lvh.me`) read as the address it resolves to.
    pub const WILDCARD_DNS: Normalized = Normalized(32);

    const NAMES: [(Normalized, &'static str); 6] = [
        (Normalized::FULLWIDTH_DIGITS, "fullwidth_digits"),
        (Normalized::UNICODE_DIGITS, "unicode_digits"),
        (Normalized::UNICODE_SEPARATORS, "unicode_separators"),
        (Normalized::FULLWIDTH_LETTERS, "fullwidth_letters"),
        (Normalized::INVISIBLE_CHARACTERS, "invisible_characters"),
        (Normalized::WILDCARD_DNS, "wildcard_dns"),
    ];

    pub fn union(self, other: Normalized) -> Normalized {
        Normalized(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the normalisations, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(n, _)| self.0 & n.0 != 0)
            .map(|(_, name)| name)
    }

    /// The record's `normalized`: absent when nothing was normalised.
    pub fn to_record(self) -> Option<Vec<String>> {
        (!self.is_empty()).then(|| self.names().map(String::from).collect())
    }
}
