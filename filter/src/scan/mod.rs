//! Content scanning: detectors over the strings of decoded JSON (tool inputs and outputs).
//! Each detector reports byte spans of the string it was given; callers turn them into
//! findings (detector + JSON path, never the value) and masks.

pub mod content;
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
}
