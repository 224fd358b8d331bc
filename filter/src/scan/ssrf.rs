//! SSRF detector (work in progress).

use super::Match;

/// Hosts a tool may legitimately reach although they are internal.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    pub hosts: Vec<String>,
}

impl AllowList {
    pub fn new(hosts: Vec<String>) -> Result<Self, String> {
        Ok(AllowList { hosts })
    }
}

/// Every URL or bare host in `text` that points at an internal address.
pub fn find_ssrf(_text: &str, _allow: &AllowList) -> Vec<Match> {
    Vec::new()
}
