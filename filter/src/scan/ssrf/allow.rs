//! The SSRF allow-list: internal targets a tool may legitimately reach.

use std::net::Ipv4Addr;

use super::host::parse_ipv6;
use acp_netclass::{embedded_v4, in_v4_net, in_v6_net};

/// Hosts a tool may legitimately reach although they are internal: exact names
/// (case-insensitive, trailing dot ignored; no wildcards) and IP addresses or CIDR blocks.
/// An allowed address is allowed however it is written (`0xa000005` = `10.0.0.5`, and
/// `::ffff:10.0.0.5`); an allowed name does not allow the addresses it resolves to.
#[derive(Debug, Clone, Default)]
pub struct AllowList {
    names: Vec<String>,
    nets: Vec<Net>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net {
    V4 { net: u32, prefix: u32 },
    V6 { net: u128, prefix: u32 },
}

impl AllowList {
    /// Validates the configured entries: `internal-api.acme.local`, `10.0.0.5`, `10.1.0.0/16`,
    /// `fd00::1`, `[fd00::1]`, `fd00:1::/32`. URLs, ports, wildcards and IPv4 shorthands
    /// (`10.1`) are refused, as are CIDRs with bits set beyond the prefix.
    pub fn new(entries: Vec<String>) -> Result<Self, String> {
        let mut list = AllowList::default();
        for raw in entries {
            let entry = raw.trim();
            if entry.is_empty() {
                return Err("an entry is empty".to_string());
            }
            if let Some((addr, prefix)) = entry.split_once('/') {
                list.nets.push(parse_cidr(entry, addr, prefix)?);
            } else if let Some(net) = parse_ip(entry) {
                list.nets.push(net);
            } else {
                list.names.push(parse_name(entry)?);
            }
        }
        Ok(list)
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.nets.is_empty()
    }

    /// `name`: lowercase, without a trailing dot.
    pub(super) fn allows_name(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }

    pub(super) fn allows_v4(&self, addr: u32) -> bool {
        self.nets
            .iter()
            .any(|n| matches!(*n, Net::V4 { net, prefix } if in_v4_net(addr, net, prefix)))
    }

    pub(super) fn allows_v6(&self, addr: u128) -> bool {
        self.nets
            .iter()
            .any(|n| matches!(*n, Net::V6 { net, prefix } if in_v6_net(addr, net, prefix)))
            || embedded_v4(addr).is_some_and(|v4| self.allows_v4(v4))
    }
}

fn parse_ip(s: &str) -> Option<Net> {
    if let Ok(a) = s.parse::<Ipv4Addr>() {
        return Some(Net::V4 {
            net: u32::from(a),
            prefix: 32,
        });
    }
    let inner = s
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .unwrap_or(s);
    parse_ipv6(inner).map(|net| Net::V6 { net, prefix: 128 })
}

fn parse_cidr(entry: &str, addr: &str, prefix: &str) -> Result<Net, String> {
    let bad = || format!("`{entry}` is not a valid CIDR (expected e.g. 10.1.0.0/16 or fd00::/8)");
    if prefix.is_empty() || prefix.len() > 3 || !prefix.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let prefix: u32 = prefix.parse().map_err(|_| bad())?;
    let (net, host_bits_clear) = match parse_ip(addr).ok_or_else(bad)? {
        Net::V4 { net, .. } if prefix <= 32 => (
            Net::V4 { net, prefix },
            in_v4_net(net, net & mask4(prefix), 32),
        ),
        Net::V6 { net, .. } if prefix <= 128 => (
            Net::V6 { net, prefix },
            in_v6_net(net, net & mask6(prefix), 128),
        ),
        _ => return Err(bad()),
    };
    if !host_bits_clear {
        return Err(format!(
            "`{entry}` has bits set beyond its /{prefix} prefix"
        ));
    }
    Ok(net)
}

fn mask4(prefix: u32) -> u32 {
    u32::MAX
        .checked_shl(32u32.saturating_sub(prefix))
        .unwrap_or(0)
}

fn mask6(prefix: u32) -> u128 {
    u128::MAX
        .checked_shl(128u32.saturating_sub(prefix))
        .unwrap_or(0)
}

fn parse_name(entry: &str) -> Result<String, String> {
    let name = entry
        .strip_suffix('.')
        .unwrap_or(entry)
        .to_ascii_lowercase();
    let valid_labels = name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid_labels {
        return Err(format!(
            "`{entry}` is not a host name, an IP address or a CIDR (URLs, ports and wildcards are not accepted)"
        ));
    }
    let last = name.rsplit('.').next().unwrap_or("");
    if last.bytes().all(|b| b.is_ascii_digit()) || last.starts_with("0x") {
        return Err(format!(
            "`{entry}` is not a valid IP address (write IPv4 addresses as four decimal parts)"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(entries: &[&str]) -> Result<AllowList, String> {
        AllowList::new(entries.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn accepts_names_addresses_and_cidrs() {
        let l = list(&[
            "Internal-API.acme.local.",
            "10.0.0.5",
            "10.1.0.0/16",
            "[fd00::1]",
            "fd01::/16",
        ])
        .unwrap();
        assert!(l.allows_name("internal-api.acme.local"));
        assert!(!l.allows_name("acme.local"));
        assert!(l.allows_v4(0x0a00_0005));
        assert!(!l.allows_v4(0x0a00_0006));
        assert!(l.allows_v4(0x0a01_ff01));
        assert!(l.allows_v6(0xfd00 << 112 | 1));
        assert!(l.allows_v6(0xfd01 << 112 | 7));
        assert!(l.allows_v6(0xffff_0a00_0005)); // ::ffff:10.0.0.5
        assert!(!l.is_empty());
        assert!(AllowList::default().is_empty());
        let everything = list(&[" 0.0.0.0/0 ", "::/0"]).unwrap();
        assert!(everything.allows_v4(0x7f00_0001) && everything.allows_v6(1));
    }

    #[test]
    fn refuses_malformed_entries() {
        for bad in [
            "",
            " ",
            "http://10.0.0.5/",
            "10.0.0.5:8080",
            "*.acme.local",
            "10.1",
            "0x0a000005",
            "10.0.0.0/33",
            "10.1.0.0/8",
            "10.0.0.0/",
            "10.0.0.0/x",
            "fd00::/129",
            "fd00::1/8",
            "a..b",
            "host name",
        ] {
            assert!(list(&[bad]).is_err(), "{bad:?} accepted");
        }
    }
}
