//! Authentication: a bearer token's form, signature and claims checked against the configured
//! issuer's keys (or, in trust mode, the payload Envoy's `jwt_authn` verified), and the
//! caller's identity read from its claims.

pub mod claims;
pub mod failure;
pub mod form;
pub mod identity;
pub mod keys;
pub mod settings;
pub mod signature;
pub mod token;
#[cfg(test)]
mod token_attacks;
pub mod trust;
