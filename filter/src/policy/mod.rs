//! Authorization: the scopes each tool requires, and the callers' rate limits.

pub mod rate_limit;
pub mod scopes;
