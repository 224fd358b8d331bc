//! The decisions over plain data: what happens to a request (authenticated, parsed, authorized,
//! scanned, rate-limited) and to the upstream's answer (scanned, filtered).

pub mod answer;
pub mod request;
