//! Which IP addresses and host names are internal: the one classification behind the filter's
//! SSRF scanner (addresses and names found in tool inputs) and the collector's webhook guard
//! (addresses a webhook URL resolves to). Each caller decides what to do with a class: the
//! scanner does not flag [`Class::Documentation`] addresses in text, the guard refuses every
//! class. Addresses are plain integers (`u32`, `u128`) so the scanner, which parses every
//! spelling of an address itself, needs no conversion.

use std::net::{IpAddr, Ipv6Addr};

/// Why a host is internal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A cloud instance-metadata endpoint (address or name).
    Metadata,
    /// 127/8, ::1, `localhost`.
    Loopback,
    /// RFC 1918, IPv6 unique-local and site-local.
    Private,
    /// 169.254/16, fe80::/10.
    LinkLocal,
    /// 100.64/10 (carrier-grade NAT; Alibaba's metadata server lives there).
    SharedAddressSpace,
    /// 0/8, `::` ("this host": connecting to it reaches the local machine).
    Unspecified,
    /// 224/4, ff00::/8.
    Multicast,
    /// 192.0.2/24, 198.51.100/24, 203.0.113/24 (RFC 5737), 2001:db8::/32 (RFC 3849): reserved
    /// for examples in documentation; routed nowhere.
    Documentation,
    /// 192.0.0/24, 198.18/15, 240/4 (incl. broadcast), 100::/64, 64:ff9b:1::/48.
    Reserved,
    /// A name that only resolves inside a network (`*.internal`, `*.local`, ...).
    InternalName,
}

const fn v4(a: u32, b: u32, c: u32, d: u32) -> u32 {
    a << 24 | b << 16 | c << 8 | d
}

const METADATA_V4: [u32; 2] = [
    v4(169, 254, 169, 254), // AWS, GCP, Azure, Oracle, DigitalOcean, OpenStack...
    v4(100, 100, 100, 200), // Alibaba Cloud
];

/// fd00:ec2::254, AWS's IPv6 metadata endpoint.
const METADATA_V6: u128 = 0xfd00_0ec2_0000_0000_0000_0000_0000_0254;

const V4_RANGES: [(u32, u32, Class); 14] = [
    (v4(0, 0, 0, 0), 8, Class::Unspecified),
    (v4(10, 0, 0, 0), 8, Class::Private),
    (v4(100, 64, 0, 0), 10, Class::SharedAddressSpace),
    (v4(127, 0, 0, 0), 8, Class::Loopback),
    (v4(169, 254, 0, 0), 16, Class::LinkLocal),
    (v4(172, 16, 0, 0), 12, Class::Private),
    (v4(192, 0, 0, 0), 24, Class::Reserved),
    (v4(192, 0, 2, 0), 24, Class::Documentation),
    (v4(192, 168, 0, 0), 16, Class::Private),
    (v4(198, 18, 0, 0), 15, Class::Reserved),
    (v4(198, 51, 100, 0), 24, Class::Documentation),
    (v4(203, 0, 113, 0), 24, Class::Documentation),
    (v4(224, 0, 0, 0), 4, Class::Multicast),
    (v4(240, 0, 0, 0), 4, Class::Reserved),
];

pub fn in_v4_net(addr: u32, net: u32, prefix: u32) -> bool {
    let mask = u32::MAX
        .checked_shl(32u32.saturating_sub(prefix))
        .unwrap_or(0);
    addr & mask == net & mask
}

pub fn in_v6_net(addr: u128, net: u128, prefix: u32) -> bool {
    let mask = u128::MAX
        .checked_shl(128u32.saturating_sub(prefix))
        .unwrap_or(0);
    addr & mask == net & mask
}

pub fn classify_v4(addr: u32) -> Option<Class> {
    if METADATA_V4.contains(&addr) {
        return Some(Class::Metadata);
    }
    V4_RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4_net(addr, *net, *prefix))
        .map(|r| r.2)
}

/// The IPv4 address an IPv6 address carries and that a dual-stack or translating network
/// would reach: IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, IPv4-translated
/// `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`, and 6to4 `2002::/16` (bits 16..48).
pub fn embedded_v4(addr: u128) -> Option<u32> {
    let low = (addr & 0xffff_ffff) as u32;
    let top = addr >> 32;
    if top == 0xffff || top == 0 || top == 0xffff_0000 || top == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low);
    }
    if addr >> 112 == 0x2002 {
        return Some(((addr >> 80) & 0xffff_ffff) as u32);
    }
    None
}

/// The class of an address of either family (an IPv6 address carrying an IPv4 one is
/// classified by the IPv4 address, see [`embedded_v4`]).
pub fn classify_ip(addr: IpAddr) -> Option<Class> {
    match addr {
        IpAddr::V4(v4) => classify_v4(u32::from(v4)),
        IpAddr::V6(v6) => classify_v6(u128::from(v6)),
    }
}

pub fn classify_v6(addr: u128) -> Option<Class> {
    match addr {
        0 => return Some(Class::Unspecified),
        1 => return Some(Class::Loopback),
        METADATA_V6 => return Some(Class::Metadata),
        _ => {}
    }
    if let Some(inner) = embedded_v4(addr) {
        return classify_v4(inner);
    }
    const RANGES: [(u128, u32, Class); 7] = [
        (0x0100 << 112, 64, Class::Reserved), // 100::/64 discard-only
        (0x0064_ff9b_0001 << 80, 48, Class::Reserved), // 64:ff9b:1::/48 local-use NAT64
        (0x2001_0db8 << 96, 32, Class::Documentation),
        (0xfc00 << 112, 7, Class::Private),    // unique local
        (0xfe80 << 112, 10, Class::LinkLocal), // link local
        (0xfec0 << 112, 10, Class::Private),   // site local (deprecated)
        (0xff00 << 112, 8, Class::Multicast),  // multicast
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6_net(addr, *net, *prefix))
        .map(|r| r.2)
}

/// Names of the local machine: always hosts, even alone in prose.
const LOOPBACK_NAMES: [&str; 4] = [
    "localhost",
    "localhost.localdomain",
    "ip6-localhost",
    "ip6-loopback",
];

/// Metadata names specific enough to be hosts even alone in prose.
const METADATA_FQDNS: [&str; 3] = [
    "metadata.google.internal",
    "instance-data.ec2.internal",
    "metadata.tencentyun.com",
];

/// Single-label metadata names (GCP's `metadata`, AWS's `instance-data`): hosts only in a
/// URL or with a port, since they are ordinary words.
const METADATA_LABELS: [&str; 2] = ["metadata", "instance-data"];

/// Suffixes of names that never resolve on the public internet: RFC 6761 `localhost`,
/// RFC 6762 `local` (mDNS), ICANN's private-use `internal`, RFC 8375 `home.arpa`, the
/// never-delegated `corp`/`home`/`lan`/`intranet`/`localdomain`, and Kubernetes' `svc`.
const INTERNAL_SUFFIXES: [&str; 10] = [
    "localhost",
    "local",
    "localdomain",
    "internal",
    "intranet",
    "lan",
    "home.arpa",
    "corp",
    "home",
    "svc",
];

/// Public wildcard-DNS services: a name under one resolves to the address written in it
/// (`10.0.0.1.nip.io`, `app.10.0.0.1.nip.io`, `10-0-0-1.sslip.io`, `app-10-0-0-1.nip.io`,
/// `0a000001.nip.io` in hex, `--1.sslip.io` for `::1`).
const WILDCARD_DNS: [&str; 3] = ["nip.io", "sslip.io", "xip.io"];

/// Public names that resolve to 127.0.0.1, with every name under them.
const LOOPBACK_DOMAINS: [&str; 3] = ["localtest.me", "lvh.me", "vcap.me"];

/// `name` (lowercase, without a trailing dot) is, or is under, `domain`: the part before it
/// (`""` for the domain itself).
fn under<'a>(name: &'a str, domain: &str) -> Option<&'a str> {
    let prefix = name.strip_suffix(domain)?;
    if prefix.is_empty() {
        return Some("");
    }
    prefix.strip_suffix('.')
}

/// Whether `name` (lowercase, without a trailing dot) is a public wildcard-DNS name that
/// resolves to a loopback address or to an address written in the name.
pub fn is_wildcard_dns(name: &str) -> bool {
    WILDCARD_DNS
        .iter()
        .chain(&LOOPBACK_DOMAINS)
        .any(|d| under(name, d).is_some())
}

/// The class of the address a wildcard-DNS name resolves to (see [`is_wildcard_dns`]):
/// loopback for the loopback domains, the class of the embedded address for the services
/// (none when it is public, or when the name embeds no address: the service's own name).
pub fn classify_wildcard_dns(name: &str) -> Option<Class> {
    if LOOPBACK_DOMAINS.iter().any(|d| under(name, d).is_some()) {
        return Some(Class::Loopback);
    }
    let prefix = WILDCARD_DNS
        .iter()
        .find_map(|d| under(name, d))
        .filter(|p| !p.is_empty())?;
    embedded_address(prefix).and_then(|ip| match ip {
        IpAddr::V4(v4) => classify_v4(u32::from(v4)),
        IpAddr::V6(v6) => classify_v6(u128::from(v6)),
    })
}

/// The address at the end of the labels before a wildcard-DNS domain: four dotted decimal
/// labels, or a last label ending in four dash-joined decimal parts, eight hex digits, or
/// (the whole label) an IPv6 address with `-` for `:`.
fn embedded_address(prefix: &str) -> Option<IpAddr> {
    let octet = |s: &str| {
        (!s.is_empty() && s.len() <= 3 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u8>().ok())
            .flatten()
    };
    let four = |parts: &mut dyn Iterator<Item = &str>| -> Option<IpAddr> {
        let mut o = [0u8; 4];
        for slot in o.iter_mut().rev() {
            *slot = octet(parts.next()?)?;
        }
        Some(IpAddr::from(o))
    };
    if let Some(ip) = four(&mut prefix.rsplit('.')) {
        return Some(ip);
    }
    let label = prefix.rsplit('.').next()?;
    if let Some(ip) = four(&mut label.rsplit('-')) {
        return Some(ip);
    }
    let hex = label.rsplit('-').next()?;
    if hex.len() == 8 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return u32::from_str_radix(hex, 16)
            .ok()
            .map(|a| IpAddr::from(a.to_be_bytes()));
    }
    label
        .replace('-', ":")
        .parse::<Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

/// `name` is lowercase, without a trailing dot.
pub fn classify_name(name: &str) -> Option<Class> {
    if LOOPBACK_NAMES.contains(&name) || name.ends_with(".localhost") {
        return Some(Class::Loopback);
    }
    if METADATA_FQDNS.contains(&name) || METADATA_LABELS.contains(&name) {
        return Some(Class::Metadata);
    }
    let internal = INTERNAL_SUFFIXES.iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
    });
    if internal {
        return Some(Class::InternalName);
    }
    classify_wildcard_dns(name)
}

/// Names flagged wherever they stand as a word (any case, no trailing dot): the loopback
/// names, the metadata FQDNs and the wildcard-DNS names that resolve inside.
pub fn is_always_name(name: &str) -> bool {
    let wildcard = || {
        let lower = name.to_ascii_lowercase();
        is_wildcard_dns(&lower) && classify_wildcard_dns(&lower).is_some()
    };
    let suffix = name
        .len()
        .checked_sub(".localhost".len())
        .and_then(|at| name.get(at..));
    LOOPBACK_NAMES
        .iter()
        .chain(&METADATA_FQDNS)
        .any(|n| n.eq_ignore_ascii_case(name))
        || suffix.is_some_and(|s| s.eq_ignore_ascii_case(".localhost"))
        || (name
            .get(name.len().saturating_sub(3)..)
            .is_some_and(|tld| tld.eq_ignore_ascii_case(".io") || tld.eq_ignore_ascii_case(".me"))
            && wildcard())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> u128 {
        s.parse::<std::net::Ipv6Addr>()
            .map(u128::from)
            .unwrap_or(u128::MAX)
    }

    #[test]
    fn v4_classes() {
        assert_eq!(classify_v4(v4(169, 254, 169, 254)), Some(Class::Metadata));
        assert_eq!(classify_v4(v4(100, 100, 100, 200)), Some(Class::Metadata));
        assert_eq!(classify_v4(v4(127, 255, 0, 1)), Some(Class::Loopback));
        assert_eq!(classify_v4(v4(172, 31, 255, 255)), Some(Class::Private));
        assert_eq!(classify_v4(v4(172, 32, 0, 0)), None);
        assert_eq!(
            classify_v4(v4(100, 127, 255, 255)),
            Some(Class::SharedAddressSpace)
        );
        assert_eq!(classify_v4(v4(100, 128, 0, 0)), None);
        assert_eq!(classify_v4(v4(198, 19, 1, 1)), Some(Class::Reserved));
        assert_eq!(classify_v4(v4(255, 255, 255, 255)), Some(Class::Reserved));
        assert_eq!(classify_v4(v4(239, 1, 1, 1)), Some(Class::Multicast));
        assert_eq!(classify_v4(v4(8, 8, 8, 8)), None);
        assert_eq!(classify_v4(v4(192, 0, 2, 1)), Some(Class::Documentation));
        assert_eq!(classify_v4(v4(198, 51, 100, 7)), Some(Class::Documentation));
        assert_eq!(
            classify_v4(v4(203, 0, 113, 255)),
            Some(Class::Documentation)
        );
        assert_eq!(classify_v4(v4(203, 0, 114, 0)), None);
    }

    #[test]
    fn v6_classes() {
        assert_eq!(classify_v6(v6("::")), Some(Class::Unspecified));
        assert_eq!(classify_v6(v6("::1")), Some(Class::Loopback));
        assert_eq!(classify_v6(v6("fd00:ec2::254")), Some(Class::Metadata));
        assert_eq!(
            classify_v6(v6("::ffff:169.254.169.254")),
            Some(Class::Metadata)
        );
        assert_eq!(classify_v6(v6("::ffff:0:10.0.0.1")), Some(Class::Private));
        assert_eq!(classify_v6(v6("64:ff9b::7f00:1")), Some(Class::Loopback));
        assert_eq!(classify_v6(v6("2002:c0a8:0101::1")), Some(Class::Private));
        assert_eq!(classify_v6(v6("fe80::1")), Some(Class::LinkLocal));
        assert_eq!(classify_v6(v6("febf::1")), Some(Class::LinkLocal));
        assert_eq!(classify_v6(v6("fdff::1")), Some(Class::Private));
        assert_eq!(classify_v6(v6("ff02::1")), Some(Class::Multicast));
        assert_eq!(classify_v6(v6("::ffff:8.8.8.8")), None);
        assert_eq!(classify_v6(v6("64:ff9b::808:808")), None);
        assert_eq!(classify_v6(v6("2001:4860:4860::8888")), None);
        assert_eq!(classify_v6(v6("2002:0808:0808::1")), None);
        assert_eq!(classify_v6(v6("2001:db8::1")), Some(Class::Documentation));
        assert_eq!(classify_v6(v6("fec0::1")), Some(Class::Private));
    }

    #[test]
    fn names() {
        assert_eq!(classify_name("localhost"), Some(Class::Loopback));
        assert_eq!(classify_name("app.localhost"), Some(Class::Loopback));
        assert_eq!(
            classify_name("metadata.google.internal"),
            Some(Class::Metadata)
        );
        assert_eq!(
            classify_name("redis.prod.internal"),
            Some(Class::InternalName)
        );
        assert_eq!(classify_name("printer.local"), Some(Class::InternalName));
        assert_eq!(classify_name("router.home.arpa"), Some(Class::InternalName));
        assert_eq!(classify_name("api.default.svc"), Some(Class::InternalName));
        assert_eq!(classify_name("internal"), None);
        assert_eq!(classify_name("mylocal"), None);
        assert_eq!(classify_name("notlocalhost"), None);
        assert_eq!(classify_name("example.com"), None);
        assert_eq!(classify_name("nip.io"), None);
        assert!(is_always_name("localhost"));
        assert!(is_always_name("LocalHost"));
        assert!(is_always_name("App.LOCALHOST"));
        assert!(!is_always_name("metadata"));
        assert!(!is_always_name("foo.internal"));
    }

    #[test]
    fn wildcard_dns_names() {
        for (name, class) in [
            ("127.0.0.1.nip.io", Some(Class::Loopback)),
            ("app.10.0.0.1.nip.io", Some(Class::Private)),
            ("10-0-0-1.sslip.io", Some(Class::Private)),
            ("app-192-168-1-7.nip.io", Some(Class::Private)),
            ("app.169-254-169-254.xip.io", Some(Class::Metadata)),
            ("7f000001.nip.io", Some(Class::Loopback)),
            ("app-c0a80101.nip.io", Some(Class::Private)),
            ("--1.sslip.io", Some(Class::Loopback)),
            ("fe80--1.sslip.io", Some(Class::LinkLocal)),
            ("localtest.me", Some(Class::Loopback)),
            ("api.lvh.me", Some(Class::Loopback)),
            ("a.b.vcap.me", Some(Class::Loopback)),
            ("8.8.8.8.nip.io", None),
            ("52-0-0-1.sslip.io", None),
            ("nip.io", None),
            ("www.sslip.io", None),
            ("300.0.0.1.nip.io", None),
            ("notnip.io", None),
            ("evillvh.me", None),
        ] {
            assert_eq!(classify_name(name), class, "{name}");
        }
        assert!(is_wildcard_dns("8.8.8.8.nip.io") && !is_wildcard_dns("example.io"));
        assert!(is_always_name("127.0.0.1.NIP.IO"));
        assert!(is_always_name("LVH.me"));
        assert!(!is_always_name("8.8.8.8.nip.io"));
        assert!(!is_always_name("example.com"));
    }

    #[test]
    fn either_family() {
        let ip = |s: &str| {
            s.parse::<IpAddr>()
                .unwrap_or(IpAddr::from([255, 255, 255, 255]))
        };
        assert_eq!(classify_ip(ip("10.1.2.3")), Some(Class::Private));
        assert_eq!(classify_ip(ip("::ffff:127.0.0.1")), Some(Class::Loopback));
        assert_eq!(classify_ip(ip("2002:a9fe:a9fe::1")), Some(Class::Metadata));
        assert_eq!(classify_ip(ip("93.184.215.14")), None);
        assert_eq!(classify_ip(ip("2606:4700::1111")), None);
    }
}
