//! Host parsing the way clients do it: the WHATWG URL host parser (what browsers, Node's
//! `URL`, and most HTTP libraries follow), widened where common clients are more lenient
//! (zone ids, NUL truncation, repeated percent-decoding), so that every plausible reading of
//! a host is examined.

use std::net::Ipv6Addr;

/// A parsed host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Host {
    V4(u32),
    V6(u128),
    /// A domain: ASCII-lowercased, width-folded, without its trailing dot.
    Name(String),
}

/// The host of a URL authority (userinfo and port already removed), as written in the text:
/// `[v6]`, or a domain / IPv4 number that may be percent-encoded. `None`: not a host a client
/// would connect to (malformed IP literal, forbidden characters, empty).
pub(super) fn parse_url_host(raw: &str) -> Option<Host> {
    if let Some(inner) = raw.strip_prefix('[') {
        return parse_ipv6_with_zone(inner.strip_suffix(']')?).map(Host::V6);
    }
    // Fast path: nothing to decode or fold.
    if raw
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
    {
        return parse_domain(raw);
    }
    let decoded = percent_decode(raw);
    // C clients stop at a NUL byte: `127.0.0.1%00.example.com` reaches 127.0.0.1.
    let mut host = decoded.split('\0').next().unwrap_or("");
    // Encoded delimiters make the host invalid for a browser; a server that decodes and then
    // splits again sees `good.com%40127.0.0.1` as 127.0.0.1 and `127.0.0.1%3a80` as port 80.
    if host.contains(['@', ':', '/', '\\', '?', '#']) {
        host = host.rsplit('@').next().unwrap_or("");
        host = host.split([':', '/', '\\', '?', '#']).next().unwrap_or("");
    }
    parse_domain(&fold(host))
}

/// A host token found without a scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Bare<'a> {
    /// An IPv4 address and the number of dotted parts it was written with.
    V4(u32, usize),
    /// A syntactically valid name, as written (not lowercased).
    Name(&'a str),
}

/// A host token found without a scheme (ASCII `[A-Za-z0-9._-]`, no trailing dot).
pub(super) fn parse_bare_host(token: &str) -> Option<Bare<'_>> {
    if token.is_empty() {
        return None;
    }
    if ends_in_number(token) {
        return parse_ipv4(token).map(|(a, parts)| Bare::V4(a, parts));
    }
    valid_name(token).then_some(Bare::Name(token))
}

/// An IPv6 literal with an optional zone id (`fe80::1%eth0`, `fe80::1%25eth0`); also
/// accepts a fully percent-encoded literal (`%3a%3a1`), which some clients decode.
pub(super) fn parse_ipv6_with_zone(s: &str) -> Option<u128> {
    let addr = s.split('%').next().unwrap_or("");
    if let Some(a) = parse_ipv6(addr) {
        return Some(a);
    }
    if s.contains('%') {
        let decoded = percent_decode(s);
        return parse_ipv6(decoded.split('%').next().unwrap_or(""));
    }
    None
}

/// RFC 4291 text forms, including `::` compression and an embedded dotted IPv4.
pub(super) fn parse_ipv6(s: &str) -> Option<u128> {
    s.parse::<Ipv6Addr>().ok().map(u128::from)
}

/// Percent-decodes up to three times (a server or a second client may decode again), then
/// reads the bytes as UTF-8 (invalid sequences become U+FFFD, which matches nothing).
fn percent_decode(s: &str) -> String {
    let mut current = s.to_string();
    for _ in 0..3 {
        if !current.contains('%') {
            break;
        }
        let bytes = current.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'%' {
                let hi = bytes.get(i + 1).and_then(|&h| hex_value(h));
                let lo = bytes.get(i + 2).and_then(|&l| hex_value(l));
                if let (Some(hi), Some(lo)) = (hi, lo) {
                    out.push(hi << 4 | lo);
                    i += 3;
                    continue;
                }
            }
            out.push(b);
            i += 1;
        }
        let next = String::from_utf8_lossy(&out).into_owned();
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn hex_value(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// The part of IDNA mapping (UTS #46) that matters here: full-width ASCII and ideographic
/// dots fold to ASCII, circled digits and letters to their plain forms, characters mapped to
/// nothing (soft hyphen, zero-width space, word joiner, BOM, variation selectors) are dropped,
/// and ASCII is lowercased. Other non-ASCII characters are kept (they match no internal name).
pub(super) fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let code = u32::from(c);
        let mapped = match code {
            0xFF01..=0xFF5E => char::from_u32(code - 0xFEE0),
            0x3002 | 0xFF61 => Some('.'),
            0x2460..=0x2468 => char::from_u32(u32::from('1') + code - 0x2460),
            0x24EA => Some('0'),
            0x24B6..=0x24CF => char::from_u32(u32::from('a') + code - 0x24B6),
            0x24D0..=0x24E9 => char::from_u32(u32::from('a') + code - 0x24D0),
            0xAD | 0x34F | 0x180B..=0x180D | 0x200B | 0x2060 | 0xFE00..=0xFE0F | 0xFEFF => None,
            _ => Some(c),
        };
        if let Some(m) = mapped {
            out.push(m.to_ascii_lowercase());
        }
    }
    out
}

/// A folded domain: an IPv4 address when its last label is a number (WHATWG "ends in a
/// number"), else a name. `None` when the IPv4 parse fails or a forbidden code point remains.
fn parse_domain(domain: &str) -> Option<Host> {
    if domain.is_empty() || domain.chars().any(forbidden_in_domain) {
        return None;
    }
    if ends_in_number(domain) {
        return parse_ipv4(domain).map(|(a, _)| Host::V4(a));
    }
    let name = domain.strip_suffix('.').unwrap_or(domain);
    (!name.is_empty()).then(|| Host::Name(name.to_string()))
}

/// WHATWG forbidden domain code points.
fn forbidden_in_domain(c: char) -> bool {
    c.is_ascii_control()
        || matches!(
            c,
            ' ' | '#' | '%' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|'
        )
}

/// WHATWG: the last label (ignoring one trailing empty label) is all digits or an IPv4
/// number (`0x` hex, `0` octal, decimal).
fn ends_in_number(domain: &str) -> bool {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let last = trimmed.rsplit('.').next().unwrap_or("");
    if last.is_empty() {
        return false;
    }
    last.bytes().all(|b| b.is_ascii_digit()) || ipv4_number(last).is_some()
}

/// One IPv4 part: `0x`/`0X` hex (digits optional), leading-`0` octal, or decimal. Values
/// beyond 64 bits saturate (they fail the range checks anyway).
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (radix, digits) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (16, hex)
        } else if part.len() > 1 && part.starts_with('0') {
            (8, part.get(1..).unwrap_or(""))
        } else {
            (10, part)
        };
    let mut value: u64 = 0;
    for c in digits.chars() {
        let d = c.to_digit(radix)?;
        value = value
            .saturating_mul(u64::from(radix))
            .saturating_add(u64::from(d));
    }
    Some(value)
}

/// WHATWG IPv4 parser (same results as inet_aton): 1 to 4 parts, one trailing dot allowed,
/// every part but the last one byte, the last part filling the remaining bytes. Returns the
/// address and the number of parts.
fn parse_ipv4(domain: &str) -> Option<(u32, usize)> {
    let trimmed = domain.strip_suffix('.').unwrap_or(domain);
    let mut numbers = [0u64; 4];
    let mut count = 0;
    for part in trimmed.split('.') {
        let slot = numbers.get_mut(count)?;
        *slot = ipv4_number(part)?;
        count += 1;
    }
    let (last, init) = numbers.get(..count)?.split_last()?;
    if init.iter().any(|&n| n > 255) {
        return None;
    }
    let remaining_bits = 8 * (5 - count as u32);
    if remaining_bits < 64 && *last >= 1u64 << remaining_bits {
        return None;
    }
    let mut addr = *last;
    for (i, &n) in init.iter().enumerate() {
        addr += n << (8 * (3 - i as u32));
    }
    u32::try_from(addr).ok().map(|a| (a, count))
}

/// Letters, digits, `-` and `_` in non-empty labels of at most 63 bytes.
fn valid_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Option<u32> {
        match parse_url_host(s) {
            Some(Host::V4(a)) => Some(a),
            _ => None,
        }
    }

    #[test]
    fn whatwg_ipv4_forms() {
        let lo = 0x7f00_0001;
        for s in [
            "127.0.0.1",
            "2130706433",
            "0x7f000001",
            "0X7F000001",
            "017700000001",
            "0177.0.0.1",
            "0x7f.1",
            "127.1",
            "127.0.1",
            "0x7f.0.0.01",
            "127.0.0.1.",
            "0x7f.0x0.0x0.0x1",
            "%31%32%37.0.0.1",
            "%2531%2532%2537.0.0.1",
            "１２７．０．０．１",
            "127。0。0。1",
            "①②⑦.⓪.⓪.①",
            "127.0.0.1%00.example.com",
        ] {
            assert_eq!(v4(s), Some(lo), "{s}");
        }
        assert_eq!(v4("10.1"), Some(0x0a00_0001));
        assert_eq!(v4("0x"), Some(0));
        for bad in [
            "256.0.0.1",
            "1.2.3.4.5",
            "1..2",
            "08.0.0.1",
            "0x7f.0.0.256",
            "4294967296",
            "1.2.3.4a5",
        ] {
            assert!(v4(bad).is_none(), "{bad}");
        }
        assert_eq!(
            parse_url_host("1.2.3.4a5"),
            Some(Host::Name("1.2.3.4a5".into()))
        );
        assert_eq!(
            parse_url_host("LocalHost."),
            Some(Host::Name("localhost".into()))
        );
        assert_eq!(
            parse_url_host("ＬＯＣＡＬ\u{AD}ＨＯＳＴ"),
            Some(Host::Name("localhost".into()))
        );
        assert_eq!(parse_url_host("99999999999999999999999"), None);
        assert_eq!(parse_url_host("0xffffffffffffffffffffffff"), None);
    }

    #[test]
    fn ipv6_forms() {
        assert_eq!(parse_url_host("[::1]"), Some(Host::V6(1)));
        assert_eq!(
            parse_url_host("[fe80::1%25eth0]"),
            Some(Host::V6(0xfe80 << 112 | 1))
        );
        assert_eq!(parse_url_host("[%3a%3a1]"), Some(Host::V6(1)));
        assert_eq!(
            parse_url_host("[::ffff:127.0.0.1]"),
            parse_url_host("[::ffff:7f00:1]")
        );
        assert_eq!(parse_url_host("[::1"), None);
        assert_eq!(parse_url_host("[1:2]"), None);
    }

    #[test]
    fn bare_hosts() {
        assert_eq!(parse_bare_host("10.0.0.1"), Some(Bare::V4(0x0a00_0001, 4)));
        assert_eq!(parse_bare_host("0X7F.1"), Some(Bare::V4(0x7f00_0001, 2)));
        assert_eq!(parse_bare_host("1.2.3"), Some(Bare::V4(0x0102_0003, 3)));
        assert_eq!(
            parse_bare_host("Foo.Internal"),
            Some(Bare::Name("Foo.Internal"))
        );
        assert_eq!(parse_bare_host("a..b"), None);
        assert_eq!(parse_bare_host("v1.2.3.4"), None);
    }
}
