//! SSRF detector: URLs and bare hosts that make a tool reach an internal address.
//!
//! Parse, then classify. Candidates are found first (`scheme:` followed by slashes,
//! protocol-relative `//host`, then bare host tokens), their authority is split the way
//! clients split it (the host follows the LAST `@`; both the browser reading, where `\` ends
//! the authority, and the curl reading, where it does not, are examined), the host is
//! percent-decoded, width-folded and lowercased and parsed with the WHATWG host rules (IPv4
//! numbers in decimal/octal/hex with 1 to 4 parts, IPv6 with embedded IPv4 and zone ids),
//! and the address is classified by range, the name by list (`acp_netclass`, the classification
//! the collector's webhook guard uses too).
//!
//! What is flagged (unless allow-listed):
//! - addresses: loopback 127/8 and ::1; unspecified 0/8 and ::; private 10/8, 172.16/12,
//!   192.168/16, fc00::/7, fec0::/10; link-local 169.254/16 and fe80::/10; shared 100.64/10;
//!   192.0.0/24, 198.18/15, multicast 224/4 and ff00::/8, 240/4 (incl. 255.255.255.255),
//!   100::/64, 64:ff9b:1::/48; IPv6 forms carrying an internal IPv4 (mapped, compatible,
//!   translated, NAT64 64:ff9b::/96, 6to4 2002::/16); metadata 169.254.169.254,
//!   100.100.100.200, fd00:ec2::254. Documentation ranges (192.0.2/24, 198.51.100/24,
//!   203.0.113/24, 2001:db8::/32) are not flagged: nothing listens there.
//! - names: `localhost`, `*.localhost`, `localhost.localdomain`, `ip6-localhost`,
//!   `ip6-loopback`, `metadata`, `metadata.google.internal`, `instance-data`,
//!   `instance-data.ec2.internal`, `metadata.tencentyun.com`, and names under `.internal`,
//!   `.local`, `.localdomain`, `.intranet`, `.lan`, `.home.arpa`, `.corp`, `.home`, `.svc`.
//! - wildcard-DNS names, by the address they resolve to (the finding says `wildcard_dns`):
//!   `localtest.me`, `lvh.me`, `vcap.me` and every name under them (loopback); names under
//!   `nip.io`, `sslip.io` and `xip.io` that embed an internal address (`10.0.0.1.nip.io`,
//!   `app.10.0.0.1.nip.io`, `10-0-0-1.sslip.io`, `app-0a000001.nip.io` in hex, `--1.sslip.io`
//!   for `::1`). They count as unambiguous names, flagged bare too.
//! - schemes: `file:`, `netdoc:`, `gopher:` and `dict:` followed by a slash, whatever the host
//!   and the allow-list (local files; raw-TCP smuggling with no legitimate use by a tool).
//!   Other schemes (`http`, `ftp`, `ldap`, `tftp`, `redis`, any `x://`) by their host; `jar:`
//!   by the URL it wraps.
//!
//! Where a host is recognised:
//! - URLs: any `scheme://` (`\` counts as `/`); `http`, `https`, `ws`, `wss`, `ftp` also with
//!   fewer slashes (`http:127.0.0.1`, `http:\\127.0.0.1`, as browsers accept); `//host` after
//!   a delimiter. Every host form is examined there, including bare integers (`2130706433`).
//!   URLs nested in a URL (`?next=http://...`) are examined on their own; a bare host inside
//!   a URL's path or query is not (the outer server receives it, not the tool).
//! - bare (no scheme): four-part IPv4 (`10.0.0.5`, `0x7f.0.0.1`, `0177.0.0.1`), IPv6
//!   (`::1`, `[fe80::1%eth0]:80`), any internal name followed by `:port`, and the
//!   unambiguous names (`localhost`, `*.localhost`, the metadata FQDNs, the wildcard-DNS
//!   names above) anywhere as a word; a following `/path` is part of the span. Not hosts when bare: integers and 1-3 part numbers
//!   (`2130706433`, `127.1`, `1.2.3`, `3.14`), names without a port (`printer.local`,
//!   `metadata`), 0/8 other than 0.0.0.0 (four-part versions like 0.1.0.0), 240/4
//!   (netmasks like 255.255.255.0) and IPv4 multicast 224/4 (no TCP connection reaches it;
//!   bare, it is as likely an arbitrary address in a log line).
//!
//! Limits: names are not resolved, so DNS-rebinding names, wildcard-DNS services other than
//! those above and public names pointing inside are not flagged; nor are single-label service names (`http://redis:6379/`), percent-encoded nested URLs
//! (`?u=http%3A%2F%2F127.0.0.1`), hosts split by whitespace, or IDNA mappings beyond
//! full-width, circled and ignorable characters.

mod allow;
mod host;
#[cfg(test)]
mod tests;

pub use allow::AllowList;

use super::gate::Gate;
use super::{Detector, Match, Normalized};
use acp_netclass::{
    classify_name, classify_v4, classify_v6, embedded_v4, is_always_name, is_wildcard_dns, Class,
};
use host::{parse_bare_host, parse_ipv6_with_zone, parse_url_host, Bare, Host};

/// Every URL or bare host in `text` that points at an internal address, as byte spans of the
/// whole URL (or host with its port and path), sorted and non-overlapping.
pub fn find_ssrf(text: &str, allow: &AllowList) -> Vec<Match> {
    find_gated(text, allow, Gate::of(text))
}

/// [`find_ssrf`] once `gate` (of `text`) is known: every candidate needs a `:`, a `.` or a
/// slash (`//metadata`), except the dotless loopback names.
pub(in crate::scan) fn find_gated(text: &str, allow: &AllowList, gate: Gate) -> Vec<Match> {
    if !gate.ssrf() {
        return Vec::new();
    }
    let mut scan = Scan {
        text,
        bytes: text.as_bytes(),
        allow,
        hits: Vec::new(),
        urls: Vec::new(),
        end_cache: (0, 0),
        curl_end_cache: (0, 0),
        at_cache: (0, 0),
        curl_host: None,
        trailing_run: (usize::MAX, 0),
    };
    if gate.urls() {
        scan.find_urls();
    }
    scan.find_bare_hosts(gate.loopback_words());
    scan.finish()
}

/// Documentation addresses (192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32) stand in
/// examples and reach nothing: they are not flagged.
fn flagged(class: Option<Class>) -> bool {
    class.is_some_and(|class| class != Class::Documentation)
}

/// How a scheme is treated.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scheme {
    /// WHATWG special schemes: the authority may follow any number of `/` or `\`.
    Special,
    /// Flagged whatever the host, when followed by at least one slash.
    Dangerous,
    /// Any other scheme: an authority only after two slashes.
    Other,
}

fn scheme_kind(scheme: &str) -> Scheme {
    const SPECIAL: [&str; 5] = ["http", "https", "ws", "wss", "ftp"];
    const DANGEROUS: [&str; 4] = ["file", "netdoc", "gopher", "dict"];
    if SPECIAL.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        Scheme::Special
    } else if DANGEROUS.iter().any(|s| s.eq_ignore_ascii_case(scheme)) {
        Scheme::Dangerous
    } else {
        Scheme::Other
    }
}

const MAX_SCHEME_LEN: usize = 32;

fn is_scheme_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.')
}

fn is_slash(b: u8) -> bool {
    b == b'/' || b == b'\\'
}

/// Ends a URL: whitespace, control characters, quotes and angle brackets.
fn is_terminator(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`')
}

/// Punctuation that ends a sentence rather than a URL.
fn is_trailing_punctuation(b: u8) -> bool {
    matches!(
        b,
        b'.' | b',' | b';' | b':' | b'!' | b'?' | b'*' | b')' | b']' | b'}'
    )
}

/// Byte classes, looked up in one table to keep the per-byte loops cheap.
const HOST: u8 = 1;
const HEX: u8 = 2;
const URL_MARK: u8 = 4;
/// What every bare host but a dotless loopback name has in or right after it: `.`, `:`, `[`.
const ANCHOR: u8 = 8;
/// ASCII bytes that end a URL (see `is_terminator`).
const TERMINATOR: u8 = 16;
/// The second byte of `lh` (`localhost`) or `p6` (`ip6-loopback`).
const LOOPBACK_ANCHOR: u8 = 32;

static CLASSES: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        let mut class = 0;
        if b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_' {
            class |= HOST;
        }
        if b.is_ascii_hexdigit() {
            class |= HEX;
        }
        if b == b':' || b == b'/' || b == b'\\' {
            class |= URL_MARK;
        }
        if b == b'[' || b == b':' || b == b'.' {
            class |= ANCHOR;
        }
        if b == b'h' || b == b'H' || b == b'6' {
            class |= LOOPBACK_ANCHOR;
        }
        if b.is_ascii_whitespace()
            || b.is_ascii_control()
            || b == b'"'
            || b == b'\''
            || b == b'<'
            || b == b'>'
            || b == b'`'
        {
            class |= TERMINATOR;
        }
        table[i] = class;
        i += 1;
    }
    table
}

/// The offset of the first `:`, `/` or `\\` in `bytes`, testing 8 bytes at a time.
fn next_url_mark(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    // A byte of `word ^ (ONES * b)` is zero where `word` holds `b`.
    let has_zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS != 0;
    let mut offset = 0;
    for chunk in bytes.chunks(8) {
        let marked = match <[u8; 8]>::try_from(chunk) {
            Ok(eight) => {
                let word = u64::from_le_bytes(eight);
                has_zero_byte(word ^ (ONES * u64::from(b':')))
                    || has_zero_byte(word ^ (ONES * u64::from(b'/')))
                    || has_zero_byte(word ^ (ONES * u64::from(b'\\')))
            }
            Err(_) => true,
        };
        if marked {
            if let Some(p) = chunk.iter().position(|&b| class(b) & URL_MARK != 0) {
                return Some(offset + p);
            }
        }
        offset += chunk.len();
    }
    None
}

fn class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// Characters of a bare host token.
fn is_host_char(b: u8) -> bool {
    class(b) & HOST != 0
}

/// What may precede a protocol-relative `//host`.
fn opens_relative_url(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(
            b,
            b'"' | b'\'' | b'(' | b'<' | b'>' | b'=' | b'[' | b',' | b'`' | b'{' | b';'
        )
}

struct Scan<'a> {
    text: &'a str,
    bytes: &'a [u8],
    allow: &'a AllowList,
    /// Flagged spans.
    hits: Vec<(usize, usize, Normalized)>,
    /// Spans of every parsed URL (flagged or not): no bare host is looked for inside.
    urls: Vec<(usize, usize)>,
    /// Caches that keep the scan linear: `(from, end)` says `text[from..end]` holds no stop
    /// (terminator; end of a curl-read authority; `@`) and `end` is one (or the text's end).
    end_cache: (usize, usize),
    curl_end_cache: (usize, usize),
    at_cache: (usize, usize),
    /// The host of the curl-read authority ending at `.0`.
    curl_host: Option<(usize, Option<(Host, usize)>)>,
    /// `(end, start)`: `text[start..end]` is the punctuation that ends the text before `end`.
    trailing_run: (usize, usize),
}

impl Scan<'_> {
    fn byte(&self, i: usize) -> Option<u8> {
        self.bytes.get(i).copied()
    }

    fn finish(mut self) -> Vec<Match> {
        self.hits
            .sort_unstable_by_key(|&(start, end, _)| (start, end));
        let mut out: Vec<Match> = Vec::with_capacity(self.hits.len());
        for (start, end, normalized) in self.hits {
            match out.last_mut() {
                Some(last) if start < last.end => {
                    last.end = last.end.max(end);
                    last.normalized = last.normalized.union(normalized);
                }
                _ => out.push(Match {
                    normalized,
                    ..Match::new(Detector::Ssrf, start, end)
                }),
            }
        }
        out
    }

    // ---- URLs ----

    fn find_urls(&mut self) {
        let mut i = 0;
        while let Some(skip) = self.bytes.get(i..).and_then(next_url_mark) {
            i += skip;
            let next = match self.byte(i).unwrap_or(0) {
                b':' => self.scheme_url(i),
                b'/' | b'\\' => self.relative_url(i),
                _ => None,
            };
            i = next.unwrap_or(0).max(i + 1);
        }
    }

    /// A URL whose scheme ends at `colon`; returns where to continue (after its authority).
    fn scheme_url(&mut self, colon: usize) -> Option<usize> {
        let mut start = colon;
        while start > 0
            && colon - start < MAX_SCHEME_LEN
            && self.byte(start - 1).is_some_and(is_scheme_char)
        {
            start -= 1;
        }
        while start < colon && !self.byte(start).is_some_and(|b| b.is_ascii_alphabetic()) {
            start += 1;
        }
        let scheme = self.text.get(start..colon).filter(|s| !s.is_empty())?;
        let kind = scheme_kind(scheme);
        let (after, slashes) = self.skip_slashes(colon + 1);
        match kind {
            Scheme::Dangerous if slashes >= 1 => {
                let end = self.extent(after, after);
                self.hits.push((start, end, Normalized::NONE));
                self.urls.push((start, end));
                Some(after)
            }
            Scheme::Dangerous => None,
            Scheme::Special => self.authority(start, after),
            Scheme::Other if slashes >= 2 => self.authority(start, after),
            Scheme::Other => None,
        }
    }

    /// A protocol-relative `//host` (or `\\host`) starting at `at`.
    fn relative_url(&mut self, at: usize) -> Option<usize> {
        if !self.byte(at + 1).is_some_and(is_slash) {
            return None;
        }
        if at > 0 && !self.byte(at - 1).is_some_and(opens_relative_url) {
            return None;
        }
        let (after, _) = self.skip_slashes(at);
        self.authority(at, after)
    }

    fn skip_slashes(&self, mut i: usize) -> (usize, usize) {
        let from = i;
        while self.byte(i).is_some_and(is_slash) {
            i += 1;
        }
        (i, i - from)
    }

    /// The authority at `at` of a URL starting at `start`: records the URL, flags it when a
    /// reading of its host is internal, and returns where to continue (the authority's end;
    /// authorities never overlap, which keeps the scan linear).
    fn authority(&mut self, start: usize, at: usize) -> Option<usize> {
        // Browser reading: `\` ends the authority. curl reading: it does not, so
        // `http://good.com\@127.0.0.1/` reaches 127.0.0.1.
        let mut browser_end = at;
        while self.byte(browser_end).is_some_and(|b| b != b'\\')
            && !self.ends_curl_authority(browser_end)
        {
            browser_end += 1;
        }
        let mut hosts = [self.host_of(at, browser_end), None];
        let mut auth_end = browser_end;
        if self.byte(browser_end) == Some(b'\\') {
            let mut cache = self.curl_end_cache;
            let curl_end = self.next_stop(&mut cache, browser_end, Self::ends_curl_authority);
            self.curl_end_cache = cache;
            let mut cache = self.at_cache;
            let next_at = self.next_stop(&mut cache, browser_end, |s, i| s.byte(i) == Some(b'@'));
            self.at_cache = cache;
            if next_at < curl_end {
                hosts[1] = self.curl_host(browser_end, curl_end);
                auth_end = curl_end;
            }
        }
        if let Some(host_end) = hosts.iter().flatten().map(|(_, end)| *end).max() {
            let end = self.extent(at, host_end);
            self.urls.push((start, end));
            if let Some((h, _)) = hosts
                .iter()
                .flatten()
                .find(|(h, _)| self.internal(h, false))
            {
                self.hits.push((start, end, how(h)));
            }
        }
        Some(auth_end)
    }

    /// The host after the last `@` of `text[from..curl_end]` (which holds one), computed once
    /// per `curl_end`.
    fn curl_host(&mut self, from: usize, curl_end: usize) -> Option<(Host, usize)> {
        if let Some((end, host)) = &self.curl_host {
            if *end == curl_end {
                return host.clone();
            }
        }
        let last_at = from
            + self
                .bytes
                .get(from..curl_end)?
                .iter()
                .rposition(|&b| b == b'@')?;
        let host = self.host_of(last_at, curl_end);
        self.curl_host = Some((curl_end, host.clone()));
        host
    }

    /// Ends an authority for every client: `/`, `?`, `#` or a terminator.
    fn ends_curl_authority(&self, i: usize) -> bool {
        match self.byte(i) {
            None => true,
            Some(b) if b.is_ascii() => {
                matches!(b, b'/' | b'?' | b'#') || class(b) & TERMINATOR != 0
            }
            Some(_) => self.non_ascii_terminator(i),
        }
    }

    fn non_ascii_terminator(&self, i: usize) -> bool {
        self.text
            .get(i..)
            .and_then(|s| s.chars().next())
            .is_some_and(is_terminator)
    }

    /// The first `i >= from` where `stop(i)` holds (or the text's end), through `cache`.
    fn next_stop(
        &self,
        cache: &mut (usize, usize),
        from: usize,
        stop: impl Fn(&Self, usize) -> bool,
    ) -> usize {
        if cache.0 <= from && from < cache.1 {
            return cache.1;
        }
        let mut i = from;
        while i < self.bytes.len() && !stop(self, i) {
            i += 1;
        }
        *cache = (from, i);
        i
    }

    /// The host in `text[at..end]` (after the last `@`, before the port) and where it ends.
    fn host_of(&self, at: usize, end: usize) -> Option<(Host, usize)> {
        let auth = self.text.get(at..end)?;
        let host_at = auth.rfind('@').map_or(0, |p| p + 1);
        let rest = auth.get(host_at..)?;
        let raw = if rest.starts_with('[') {
            rest.get(..=rest.find(']')?)?
        } else {
            let raw = rest.get(..rest.find(':').unwrap_or(rest.len()))?;
            raw.trim_end_matches([')', ']', '}', ',', ';', '!', '*', '\''])
        };
        parse_url_host(raw).map(|h| (h, at + host_at + raw.len()))
    }

    /// End of a URL or path starting at `from`: the next terminator, less trailing
    /// punctuation (closing brackets stay when they close one opened in the URL), but never
    /// before `min_end`.
    fn extent(&mut self, from: usize, min_end: usize) -> usize {
        let mut cache = self.end_cache;
        let raw_end = self.next_stop(&mut cache, from, |s, i| match s.byte(i) {
            Some(b) if b.is_ascii() => class(b) & TERMINATOR != 0,
            _ => s.non_ascii_terminator(i),
        });
        self.end_cache = cache;
        // Nested URLs share their end: the trailing run is found once per end.
        let run_start = match self.trailing_run {
            (end, start) if end == raw_end => start,
            _ => {
                let mut start = raw_end;
                while start > 0 && self.byte(start - 1).is_some_and(is_trailing_punctuation) {
                    start -= 1;
                }
                self.trailing_run = (raw_end, start);
                start
            }
        };
        // Brackets opened in the (last 128 bytes of the) URL before the trailing run.
        let window = self
            .bytes
            .get(from.max(run_start.saturating_sub(128)).min(run_start)..run_start)
            .unwrap_or(&[]);
        let (mut parens, mut brackets, mut braces) = (0i64, 0i64, 0i64);
        for &b in window {
            match b {
                b'(' => parens += 1,
                b')' => parens -= 1,
                b'[' => brackets += 1,
                b']' => brackets -= 1,
                b'{' => braces += 1,
                b'}' => braces -= 1,
                _ => {}
            }
        }
        let mut end = run_start;
        for &b in self.bytes.get(run_start..raw_end).unwrap_or(&[]) {
            let open = match b {
                b')' => &mut parens,
                b']' => &mut brackets,
                b'}' => &mut braces,
                _ => break,
            };
            if *open <= 0 {
                break;
            }
            *open -= 1;
            end += 1;
        }
        end.max(min_end)
    }

    /// Internal and not allow-listed. `bare`: found without a scheme, where 0/8 other than
    /// 0.0.0.0 (versions), 240/4 (netmasks) and 224/4 (multicast) are too ambiguous to flag.
    fn internal(&self, host: &Host, bare: bool) -> bool {
        match host {
            Host::V4(a) => {
                let class = classify_v4(*a);
                let ambiguous = bare
                    && match class {
                        Some(Class::Unspecified) => *a != 0,
                        Some(Class::Reserved) => *a >> 28 == 0xf,
                        Some(Class::Multicast) => true,
                        _ => false,
                    };
                flagged(class) && !ambiguous && !self.allow.allows_v4(*a)
            }
            Host::V6(a) => {
                // Bare, an embedded IPv4 follows the bare IPv4 rules (`[::2]` is a slice).
                if let Some(v4) = embedded_v4(*a).filter(|_| bare && *a > 1) {
                    return self.internal(&Host::V4(v4), true) && !self.allow.allows_v6(*a);
                }
                flagged(classify_v6(*a)) && !self.allow.allows_v6(*a)
            }
            Host::Name(n) => classify_name(n).is_some() && !self.allow.allows_name(n),
        }
    }

    // ---- bare hosts ----

    /// Bare hosts are found from their anchors (a `.`, `:` or `[`; with `loopback_words`, the
    /// `h` of `lh` and the `6` of `p6`): the token around an anchor is examined, the words
    /// between anchors are not looked at twice.
    fn find_bare_hosts(&mut self, loopback_words: bool) {
        self.urls.sort_unstable();
        let urls = std::mem::take(&mut self.urls);
        let mut next_url = urls.iter().peekable();
        let anchors = ANCHOR | if loopback_words { LOOPBACK_ANCHOR } else { 0 };
        let mut i = 0;
        while let Some(skip) = self
            .bytes
            .get(i..)
            .and_then(|rest| rest.iter().position(|&b| class(b) & anchors != 0))
        {
            let anchor = i + skip;
            let b = self.byte(anchor).unwrap_or(0);
            let pair = |p: u8| matches!((p | 0x20, b | 0x20), (b'l', b'h') | (b'p', b'6'));
            let prev = anchor.checked_sub(1).and_then(|p| self.byte(p));
            if class(b) & ANCHOR == 0 && !prev.is_some_and(pair) {
                i = anchor + 1;
                continue;
            }
            // The token the anchor is in, or follows.
            let lower = i;
            i = anchor;
            while i > lower && self.byte(i - 1).is_some_and(is_host_char) {
                i -= 1;
            }
            let b = self.byte(i).unwrap_or(0);
            while next_url.peek().is_some_and(|&&(_, end)| end <= i) {
                next_url.next();
            }
            if let Some(&&(start, end)) = next_url.peek() {
                if start <= i {
                    i = end;
                    continue;
                }
            }
            let boundary = i == 0 || !self.byte(i - 1).is_some_and(is_host_char);
            let next = match b {
                _ if !boundary => None,
                b'[' => self.bracketed(i),
                b':' => self.bare_ipv6(i),
                _ if is_host_char(b) => self.token(i),
                _ => None,
            };
            i = next.unwrap_or(0).max(i + 1);
        }
    }

    /// `[v6]`, `[v6]:port`, with an optional path.
    fn bracketed(&mut self, at: usize) -> Option<usize> {
        let close = at
            + self
                .bytes
                .get(at..)?
                .iter()
                .take(64)
                .position(|&b| b == b']')?;
        let addr = parse_ipv6_with_zone(self.text.get(at + 1..close)?)?;
        let end = self.port_and_path(close + 1);
        if self.internal(&Host::V6(addr), true) {
            self.hits.push((at, end, Normalized::NONE));
        }
        Some(end)
    }

    /// An unbracketed IPv6 address (at least two colons), with an optional zone id.
    fn bare_ipv6(&mut self, at: usize) -> Option<usize> {
        const LONGEST: usize = 45; // ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255
        let mut end = at;
        while self
            .byte(end)
            .is_some_and(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            end += 1;
            if end - at > LONGEST + 1 {
                return None;
            }
        }
        let run = self.bytes.get(at..end)?;
        if run.iter().filter(|&&b| b == b':').count() < 2 || !run.iter().any(u8::is_ascii_hexdigit)
        {
            return None;
        }
        if self
            .byte(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return None;
        }
        // A sentence may end right after the address.
        let mut addr_end = end;
        let mut parsed = self.text.get(at..addr_end).and_then(host::parse_ipv6);
        if parsed.is_none() && matches!(run.last(), Some(b'.' | b':')) {
            addr_end -= 1;
            parsed = self.text.get(at..addr_end).and_then(host::parse_ipv6);
        }
        let addr = parsed?;
        let mut span_end = addr_end;
        if addr_end == end && self.byte(end) == Some(b'%') {
            span_end += 1;
            while self.byte(span_end).is_some_and(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')
            }) {
                span_end += 1;
            }
        }
        let span_end = self.path(span_end);
        if self.internal(&Host::V6(addr), true) {
            self.hits.push((at, span_end, Normalized::NONE));
        }
        Some(span_end)
    }

    /// A host token (name or dotted IPv4) with an optional `:port` and path.
    fn token(&mut self, at: usize) -> Option<usize> {
        let mut tok_end = at;
        let (mut dots, mut all_hex, mut last) = (0, true, 0);
        while let Some(b) = self.byte(tok_end) {
            let c = class(b);
            if c & HOST == 0 {
                break;
            }
            dots += usize::from(b == b'.');
            all_hex &= c & HEX != 0;
            last = b;
            tok_end += 1;
        }
        let next = self.byte(tok_end);
        if next == Some(b':') && all_hex {
            if let Some(end) = self.bare_ipv6(at) {
                return Some(end);
            }
        }
        // Fast exit for ordinary words: a bare host has an inner dot, a port, or is a
        // loopback name.
        let inner_dot = dots > usize::from(last == b'.');
        if !inner_dot
            && next != Some(b':')
            && !self
                .text
                .get(at..tok_end)
                .is_some_and(looks_like_loopback_word)
        {
            return Some(tok_end);
        }
        let token = self.text.get(at..tok_end)?;
        // Leading `-`/`_`/`.` (command-line flags, list bullets) and trailing dots (end of a
        // sentence) are not part of the host.
        let lead = token.len() - token.trim_start_matches(['-', '_', '.']).len();
        let host = token.get(lead..)?.trim_end_matches('.');
        let start = at + lead;
        if host.is_empty() {
            return Some(tok_end);
        }
        let port_end = self.port(tok_end);
        let has_port = port_end.is_some();
        // The same test once the leading and trailing punctuation is gone.
        if !has_port && !host.contains('.') && !looks_like_loopback_word(host) {
            return Some(tok_end);
        }
        let flagged = match parse_bare_host(host) {
            Some(Bare::V4(a, 4)) => self
                .internal(&Host::V4(a), true)
                .then_some(Normalized::NONE),
            Some(Bare::Name(n)) if has_port || is_always_name(n) => {
                let name = Host::Name(n.to_ascii_lowercase());
                self.internal(&name, true).then(|| how(&name))
            }
            _ => None,
        };
        let Some(normalized) = flagged else {
            if host.starts_with(|c: char| c.is_ascii_digit()) && host.contains(['-', '_']) {
                self.split_token(start, host);
            }
            return Some(port_end.unwrap_or(tok_end));
        };
        let end = match port_end {
            Some(p) => self.path(p),
            None if self.byte(tok_end) == Some(b'/') => self.path(tok_end),
            None => start + host.len(),
        };
        self.hits.push((start, end, normalized));
        Some(end.max(tok_end))
    }

    /// Dash-joined IPv4 ranges and suffixed addresses (`10.0.0.1-10.0.0.9`, `10.0.0.1_old`):
    /// each four-part piece is a host.
    fn split_token(&mut self, start: usize, host: &str) {
        let mut offset = 0;
        for piece in host.split(['-', '_']) {
            let piece_start = start + offset;
            offset += piece.len() + 1;
            let piece = piece.trim_end_matches('.');
            if let Some(Bare::V4(a, 4)) = parse_bare_host(piece) {
                if self.internal(&Host::V4(a), true) {
                    self.hits
                        .push((piece_start, piece_start + piece.len(), Normalized::NONE));
                }
            }
        }
    }

    /// `:port` at `at` (1 to 5 digits, at most 65535, not followed by a letter): its end.
    fn port(&self, at: usize) -> Option<usize> {
        if self.byte(at) != Some(b':') {
            return None;
        }
        let mut end = at + 1;
        let mut value: u32 = 0;
        while let Some(d) = self.byte(end).filter(u8::is_ascii_digit) {
            value = value * 10 + u32::from(d - b'0');
            end += 1;
            if end - at > 6 {
                return None;
            }
        }
        // `.` ends a sentence after a port, but `addr:10.0.0.1` has no port.
        let continues = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
        let ok = end > at + 1
            && value <= 65535
            && !self.byte(end).is_some_and(continues)
            && !(self.byte(end) == Some(b'.') && self.byte(end + 1).is_some_and(continues));
        ok.then_some(end)
    }

    /// After a bracketed address: an optional port, then an optional path.
    fn port_and_path(&mut self, at: usize) -> usize {
        let at = self.port(at).unwrap_or(at);
        self.path(at)
    }

    /// A `/path` at `at` extends the span to the end of the path.
    fn path(&mut self, at: usize) -> usize {
        if self.byte(at) == Some(b'/') {
            self.extent(at, at)
        } else {
            at
        }
    }
}

/// What a flagged host was read as: a wildcard-DNS name by the address it resolves to.
fn how(host: &Host) -> Normalized {
    match host {
        Host::Name(n) if is_wildcard_dns(n) => Normalized::WILDCARD_DNS,
        _ => Normalized::NONE,
    }
}

/// Dotless names flagged as bare words: `localhost`, `ip6-localhost`, `ip6-loopback`
/// (possibly after a `-`, `_` or `.` prefix).
fn looks_like_loopback_word(word: &str) -> bool {
    if word.len() < 9 {
        return false;
    }
    let word = word
        .trim_start_matches(['-', '_', '.'])
        .trim_end_matches('.');
    matches!(word.len(), 9 | 12 | 13)
        && ["localhost", "ip6-localhost", "ip6-loopback"]
            .iter()
            .any(|n| n.eq_ignore_ascii_case(word))
}
