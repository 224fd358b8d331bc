//! The issuer's signing keys: JWKS documents, their refresh schedule and OpenID discovery.

pub mod discovery;
pub mod jwks;
pub mod remote;
pub mod source;
