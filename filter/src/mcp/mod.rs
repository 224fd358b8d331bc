//! MCP over HTTP as the filter reads it: the JSON-RPC request body, the headers MCP mirrors it
//! into, the upstream's answer, the OAuth protected resource metadata the filter serves, and the
//! strict JSON parser they share.

pub mod headers;
pub mod request;
pub mod resource_metadata;
pub mod response;
pub mod strict_json;
