//! Why a request failed authentication, as its audit record says.

/// Why a request failed authentication. [`AuthFailure::reason`] is what the audit record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    MissingToken,
    Malformed,
    /// Longer than the form allows (`form::MAX_TOKEN_BYTES`).
    TokenTooLarge,
    /// A header parameter or claim appears twice: parsers disagree on which one wins.
    DuplicateClaim,
    /// The header has `crit`: ACP supports no critical extension (RFC 7515 4.1.11).
    CriticalHeader,
    /// The header carries or points to a key (`jku`, `jwk`, `x5u`, `x5c`).
    UntrustedKeySource,
    UnsupportedAlg,
    UnknownKid,
    AlgMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    /// `iat` later than now plus the clock skew.
    IssuedInFuture,
    WrongIssuer,
    WrongAudience,
    MissingExp,
    MissingSub,
    TenantMismatch,
    /// The remote JWKS has not been fetched yet: no token can be verified.
    KeysUnavailable,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::MissingToken => "missing_token",
            AuthFailure::Malformed => "malformed",
            AuthFailure::TokenTooLarge => "token_too_large",
            AuthFailure::DuplicateClaim => "duplicate_claim",
            AuthFailure::CriticalHeader => "critical_header",
            AuthFailure::UntrustedKeySource => "untrusted_key_source",
            AuthFailure::UnsupportedAlg => "unsupported_alg",
            AuthFailure::UnknownKid => "unknown_kid",
            AuthFailure::AlgMismatch => "alg_mismatch",
            AuthFailure::BadSignature => "bad_signature",
            AuthFailure::Expired => "expired",
            AuthFailure::NotYetValid => "not_yet_valid",
            AuthFailure::IssuedInFuture => "issued_in_future",
            AuthFailure::WrongIssuer => "wrong_issuer",
            AuthFailure::WrongAudience => "wrong_audience",
            AuthFailure::MissingExp => "missing_exp",
            AuthFailure::MissingSub => "missing_sub",
            AuthFailure::TenantMismatch => "tenant_mismatch",
            AuthFailure::KeysUnavailable => "keys_unavailable",
        }
    }
}
