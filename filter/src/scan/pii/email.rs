//! Email addresses: a practical subset of RFC 5322 `addr-spec`.
//!
//! * Local part: up to 64 of `A–Z a–z 0–9 . _ % + - '`, not starting or ending with `.` (a
//!   leading `'` or `.` is left out of the match), no `..`. Quoted local parts and the rarer
//!   symbols (`!#$&*/=?^{|}~`) are left out on purpose: in running text and query strings they
//!   are far more often the delimiters around an address (`?to=bob@x.io`) than part of it.
//! * Domain: at least two dot-separated labels of letters, digits and inner hyphens (1–63
//!   bytes each, 253 in all); the last (the TLD) is letters only and at least 2 long, or an
//!   IDN `xn--` label. IP-literal domains are not matched.
//! * Not an email: scp-style SSH targets (`git@github.com:org/repo.git`), retina asset names (`icon@2x.png`) and file names whose "TLD" is a common
//!   file extension that is no TLD (`.png`, `.js`, `.json`, …); package specs (`react@18.2.0`,
//!   numeric "TLD"); handles (`@alice`, no local part).
//!
//! The match must not be glued to more address characters on either side.

use super::bytes::{at, before, is_word};

/// The span of an email address around the `@` at `at_pos`.
pub(super) fn detect(b: &[u8], at_pos: usize) -> Option<(usize, usize)> {
    // Local part, backwards.
    let mut s = at_pos;
    while s > 0 && is_local(before(b, s)) {
        s -= 1;
        if at_pos - s > 64 {
            return None;
        }
    }
    while matches!(at(b, s), b'.' | b'\'') && s < at_pos {
        s += 1;
    }
    if s == at_pos || before(b, at_pos) == b'.' || before(b, s) == b'@' {
        return None;
    }
    let mut k = s;
    while k + 1 < at_pos {
        if at(b, k) == b'.' && at(b, k + 1) == b'.' {
            return None;
        }
        k += 1;
    }
    // Domain, forwards: labels separated by single dots.
    let d = at_pos + 1;
    let mut p = d;
    let mut labels = 0;
    let mut first_label_end = 0;
    let mut last_label;
    loop {
        let l = p;
        while at(b, p).is_ascii_alphanumeric() || at(b, p) == b'-' {
            p += 1;
        }
        let n = p - l;
        if n == 0 || n > 63 || at(b, l) == b'-' || before(b, p) == b'-' {
            return None;
        }
        labels += 1;
        if labels == 1 {
            first_label_end = p;
        }
        last_label = l;
        if at(b, p) == b'.' && at(b, p + 1).is_ascii_alphanumeric() {
            p += 1;
        } else {
            break;
        }
    }
    if labels < 2 || p - d > 253 {
        return None;
    }
    let tld = b.get(last_label..p)?;
    let idn = tld.len() > 4
        && tld
            .get(..4)
            .is_some_and(|x| x.eq_ignore_ascii_case(b"xn--"));
    if !idn && (tld.len() < 2 || !tld.iter().all(u8::is_ascii_alphabetic)) {
        return None;
    }
    if is_file_extension(tld) || is_retina(b.get(d..first_label_end)?) {
        return None;
    }
    // Not glued to more address on the right.
    let n = at(b, p);
    if n.is_ascii_alphanumeric() || matches!(n, b'_' | b'@' | b'-') {
        return None;
    }
    // `git@github.com:org/repo.git`: an scp-style SSH target, not a mailbox.
    if n == b':' && (is_word(at(b, p + 1)) || at(b, p + 1) == b'/') {
        return None;
    }
    Some((s, p))
}

#[inline]
fn is_local(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-' | b'\'')
}

/// File extensions that are not top-level domains (so `logo@site.png` is a file name).
fn is_file_extension(tld: &[u8]) -> bool {
    const EXT: &[&[u8]] = &[
        b"png", b"jpg", b"jpeg", b"gif", b"svg", b"webp", b"bmp", b"ico", b"tif", b"tiff", b"heic",
        b"css", b"js", b"mjs", b"ts", b"tsx", b"jsx", b"json", b"txt", b"htm", b"html", b"pdf",
        b"xml", b"yml", b"yaml", b"toml", b"lock", b"map", b"wasm",
    ];
    EXT.iter().any(|e| e.eq_ignore_ascii_case(tld))
}

/// `2x`, `3x`: the resolution suffix of an image asset (`icon@2x.png`).
fn is_retina(label: &[u8]) -> bool {
    match label.split_last() {
        Some((&x, digits)) => {
            (x == b'x' || x == b'X') && !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::Email;

    fn emails(s: &str) -> Vec<&str> {
        only(s, Email)
    }

    #[test]
    fn addresses() {
        for s in [
            "alice@example.com",
            "bob.smith+tag@mail.example.co.uk",
            "o'connor@example.ie",
            "first_last%x@sub-domain.example.org",
            "a@b.io",
            "user-1@xn--80ak6aa92e.xn--p1ai",
            "UPPER@EXAMPLE.COM",
            "4155552671@vtext.com",
        ] {
            assert_eq!(emails(&format!("mail {s}, thanks")), vec![s], "{s}");
            assert_eq!(emails(&format!("<{s}>")), vec![s], "{s}");
        }
        assert_eq!(
            emails("mailto:alice@example.com?subject=hi"),
            vec!["alice@example.com"]
        );
        assert_eq!(
            emails("?to=alice@example.com&x=1"),
            vec!["alice@example.com"]
        );
        assert_eq!(emails("'alice@example.com'"), vec!["alice@example.com"]);
        assert_eq!(
            emails("Email: alice@example.com."),
            vec!["alice@example.com"]
        );
        assert_eq!(
            emails(r#"{"to":["a@x.com","b@y.org"]}"#),
            vec!["a@x.com", "b@y.org"]
        );
    }

    #[test]
    fn not_addresses() {
        for s in [
            "@alice",
            "alice@",
            "alice@localhost",
            "alice@example",
            "alice@example.c",
            "alice@example.123",
            "react@18.2.0",
            "lodash@4.17.21",
            "icon@2x.png",
            "logo@site.png",
            "bundle@main.js",
            "alice..bob@example.com",
            "alice.@example.com",
            "alice@-example.com",
            "alice@example-.com",
            "alice@example..com",
            "user@[192.168.0.1]",
            "a@b@c.com",
            "@Override",
            "price: 5 @ $3.00",
            "git@github.com:org/repo.git",
        ] {
            assert!(emails(s).is_empty(), "{s} -> {:?}", emails(s));
        }
    }
}
