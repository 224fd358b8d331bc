//! Credentials.
//!
//! * AWS access key ids: `AKIA`, `ASIA`, `AGPA`, `AIDA`, `AROA`, `AIPA`, `ANPA`, `ANVA`, `ABIA`,
//!   `ACCA`, `APKA` or `ASCA`, then exactly 16 capital letters or digits, as a word of its own.
//! * PEM private keys: `-----BEGIN <label>-----` where the label contains `PRIVATE KEY`
//!   (`RSA`, `EC`, `DSA`, `OPENSSH`, `ENCRYPTED`, PKCS#8, `PGP … KEY BLOCK`), through the
//!   matching `-----END …-----` (within 16 KiB). A block cut off before its END line is still
//!   reported: the header and the base64 body that follows.
//! * Bearer tokens: the word `Bearer` (any case), one to four spaces, then an RFC 6750 token
//!   (`A–Z a–z 0–9 - . _ ~ + /`, `=` padding) of at least 16 characters that has a digit or
//!   mixes upper and lower case, so placeholders (`Bearer <token>`, `Bearer YOUR_TOKEN_HERE`,
//!   `bearer of this letter`) are not reported. The span is the token alone.
//! * JWTs (JWS and JWE compact form): base64url segments joined by dots, the first starting
//!   `eyJ` (a JSON object) and at least 10 long, three to five segments (an empty signature
//!   or detached payload allowed).
//! * GitHub tokens: `ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_` + at least 30 letters or digits;
//!   fine-grained `github_pat_` + at least 22 of letters, digits and `_`.
//! * Slack tokens: `xoxa-`, `xoxb-`, `xoxe-`, `xoxo-`, `xoxp-`, `xoxr-`, `xoxs-` + at least 10 of
//!   letters, digits and `-`, with a digit.

use super::bytes::{at, before, is_word};

/// The bytes a secret can start with (see [`detect`]).
pub(super) const TRIGGERS: &[u8] = b"A-Bbegx";

/// A cheap filter before [`detect`]: whether a secret can start with bytes `c`, `next`.
#[inline]
pub(super) fn plausible(c: u8, next: u8) -> bool {
    match c {
        b'A' => next.is_ascii_uppercase(),
        b'-' => next == b'-',
        b'B' | b'b' => next == b'e' || next == b'E',
        b'e' => next == b'y',
        b'g' => next == b'h' || next == b'i',
        b'x' => next == b'o',
        _ => false,
    }
}

/// The span of a secret starting at `i`, if any.
pub(super) fn detect(b: &[u8], i: usize) -> Option<(usize, usize)> {
    match at(b, i) {
        b'A' => aws(b, i),
        b'-' => pem(b, i),
        b'B' | b'b' => bearer(b, i),
        b'e' => jwt(b, i),
        b'g' => github(b, i),
        b'x' => slack(b, i),
        _ => None,
    }
}

fn starts(b: &[u8], i: usize, lit: &[u8]) -> bool {
    b.get(i..i + lit.len()) == Some(lit)
}

/// The first occurrence of `needle` in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut k = 0;
    while k + needle.len() <= hay.len() {
        let rest = hay.get(k..)?;
        k += rest.iter().position(|&c| c == first)?;
        if hay.get(k..k + needle.len()) == Some(needle) {
            return Some(k);
        }
        k += 1;
    }
    None
}

/// The end of the run of bytes from `i` satisfying `f`.
fn run(b: &[u8], mut i: usize, f: impl Fn(u8) -> bool) -> usize {
    while i < b.len() && f(at(b, i)) {
        i += 1;
    }
    i
}

fn aws(b: &[u8], i: usize) -> Option<(usize, usize)> {
    const PREFIXES: [&[u8]; 12] = [
        b"AKIA", b"ASIA", b"AGPA", b"AIDA", b"AROA", b"AIPA", b"ANPA", b"ANVA", b"ABIA", b"ACCA",
        b"APKA", b"ASCA",
    ];
    if is_word(before(b, i)) {
        return None;
    }
    let head = b.get(i..i + 4)?;
    if !PREFIXES.contains(&head) {
        return None;
    }
    let end = i + 20;
    let body = b.get(i + 4..end)?;
    let ok = body
        .iter()
        .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        && !is_word(at(b, end));
    ok.then_some((i, end))
}

fn pem(b: &[u8], i: usize) -> Option<(usize, usize)> {
    const BEGIN: &[u8] = b"-----BEGIN ";
    const DASHES: &[u8] = b"-----";
    const MAX_BODY: usize = 16 * 1024;
    if !starts(b, i, BEGIN) {
        return None;
    }
    let label = i + BEGIN.len();
    let line_end =
        |from: usize| run(b, from, |c| c != b'-' && c != b'\n' && c != b'\r').min(from + 64);
    let p = line_end(label);
    if !starts(b, p, DASHES) || find(b.get(label..p)?, b"PRIVATE KEY").is_none() {
        return None;
    }
    let body = p + DASHES.len();
    let limit = (body + MAX_BODY).min(b.len());
    // The body (base64, line breaks, escaped line breaks, `Proc-Type:`/`DEK-Info:` headers) up
    // to the END line. Stops at any other `-----`, so each byte is looked at by one block only.
    let mut q = body;
    while q < limit {
        let c = at(b, q);
        if c == b'-' && starts(b, q, DASHES) {
            if starts(b, q, b"-----END ") {
                let e = line_end(q + 9);
                return Some((
                    i,
                    if starts(b, e, DASHES) {
                        e + DASHES.len()
                    } else {
                        e
                    },
                ));
            }
            break;
        }
        if !(c.is_ascii_alphanumeric() || b"+/=\\:,.- \t\r\n".contains(&c)) {
            break;
        }
        q += 1;
    }
    // Cut off before the END line: the header and the base64 body that follows.
    let mut e = run(b, body, |c| {
        c.is_ascii_alphanumeric() || b"+/=\\\r\n".contains(&c)
    })
    .min(q);
    while e > body && matches!(before(b, e), b'\r' | b'\n' | b'\\') {
        e -= 1;
    }
    Some((i, e))
}

fn bearer(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if is_word(before(b, i)) || !b.get(i..i + 6)?.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let sp = i + 6;
    let t = run(b, sp, |c| c == b' ').min(sp + 4);
    if t == sp || at(b, t) == b' ' {
        return None;
    }
    let is_token =
        |c: u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
    let mut e = run(b, run(b, t, is_token), |c| c == b'=');
    while e > t && before(b, e) == b'.' {
        e -= 1;
    }
    let tok = b.get(t..e)?;
    let digit = tok.iter().any(u8::is_ascii_digit);
    let mixed = tok.iter().any(u8::is_ascii_uppercase) && tok.iter().any(u8::is_ascii_lowercase);
    (tok.len() >= 16 && (digit || mixed)).then_some((t, e))
}

fn is_b64url(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-' || c == b'_'
}

fn jwt(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let prev = before(b, i);
    if !starts(b, i, b"eyJ") || is_b64url(prev) || prev == b'.' {
        return None;
    }
    let header_end = run(b, i, is_b64url);
    if header_end - i < 10 {
        return None;
    }
    let mut p = header_end;
    let mut segs = 1;
    while segs < 5 && at(b, p) == b'.' {
        let next = at(b, p + 1);
        // Another segment follows, or an empty one that a dot closes, or an empty signature.
        if !(is_b64url(next) || next == b'.' || segs == 2) {
            break;
        }
        p = run(b, p + 1, is_b64url);
        segs += 1;
    }
    (segs >= 3).then_some((i, p))
}

fn github(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if is_word(before(b, i)) {
        return None;
    }
    if starts(b, i, b"github_pat_") {
        let e = run(b, i + 11, is_word);
        return (e - (i + 11) >= 22).then_some((i, e));
    }
    let kind = at(b, i + 2);
    if !starts(b, i, b"gh") || !b"pousr".contains(&kind) || at(b, i + 3) != b'_' {
        return None;
    }
    let e = run(b, i + 4, |c| c.is_ascii_alphanumeric());
    (e - (i + 4) >= 30 && !is_word(at(b, e))).then_some((i, e))
}

fn slack(b: &[u8], i: usize) -> Option<(usize, usize)> {
    if is_word(before(b, i))
        || !starts(b, i, b"xox")
        || !b"abeoprs".contains(&at(b, i + 3))
        || at(b, i + 4) != b'-'
    {
        return None;
    }
    let e = run(b, i + 5, |c| c.is_ascii_alphanumeric() || c == b'-');
    let body = b.get(i + 5..e)?;
    (body.len() >= 10 && body.iter().any(u8::is_ascii_digit) && !is_word(at(b, e)))
        .then_some((i, e))
}

#[cfg(test)]
mod tests {
    use super::super::tests::only;
    use crate::scan::Detector::Secret;

    fn secrets(s: &str) -> Vec<&str> {
        only(s, Secret)
    }

    const JWT: &str = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";

    #[test]
    fn aws_keys() {
        assert_eq!(
            secrets("aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
            vec!["AKIAIOSFODNN7EXAMPLE"]
        );
        assert_eq!(
            secrets(r#"{"AccessKeyId":"ASIAY34FZKBOKMUTVV7A"}"#),
            vec!["ASIAY34FZKBOKMUTVV7A"]
        );
        assert!(secrets("AKIAIOSFODNN7EXAMPL").is_empty()); // 15
        assert!(secrets("AKIAIOSFODNN7EXAMPLE1").is_empty()); // 17
        assert!(secrets("xAKIAIOSFODNN7EXAMPLE").is_empty());
        assert!(secrets("AKIAiosfodnn7example").is_empty());
        assert!(secrets("AKIA").is_empty());
    }

    #[test]
    fn pem_blocks() {
        let key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\naNvRcgh4dwECgYEA7Tk=\n-----END RSA PRIVATE KEY-----";
        assert_eq!(secrets(&format!("key:\n{key}\nbye")), vec![key]);
        let k8 = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\\n-----END PRIVATE KEY-----";
        assert_eq!(secrets(&format!("\"{k8}\"")), vec![k8]);
        let ssh =
            "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU=\n-----END OPENSSH PRIVATE KEY-----";
        assert_eq!(secrets(ssh), vec![ssh]);
        // Cut off.
        assert_eq!(
            secrets("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBn\n"),
            vec!["-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBn"]
        );
        // Public material is not secret.
        assert!(
            secrets("-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----")
                .is_empty()
        );
        assert!(secrets("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----").is_empty());
        assert!(secrets("----- BEGIN nothing").is_empty());
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(
            secrets("Authorization: Bearer abcdef0123456789abcdef"),
            vec!["abcdef0123456789abcdef"]
        );
        assert_eq!(
            secrets("authorization: bearer sk-proj-AbCdEfGhIjKlMnOp."),
            vec!["sk-proj-AbCdEfGhIjKlMnOp"]
        );
        assert_eq!(secrets(&format!("Bearer {JWT}")), vec![JWT]);
        assert_eq!(
            secrets("BEARER dGhpcyBpcyBhIHRva2Vu=="),
            vec!["dGhpcyBpcyBhIHRva2Vu=="]
        );
        for s in [
            "Bearer <token>",
            "Bearer ${TOKEN}",
            "Bearer YOUR_API_TOKEN_HERE",
            "Bearer your-access-token-here",
            "the bearer of this letter",
            "Bearer abc123",
            "Bearer",
            "xBearer abcdef0123456789abcdef",
        ] {
            assert!(secrets(s).is_empty(), "{s} -> {:?}", secrets(s));
        }
    }

    #[test]
    fn jwts() {
        assert_eq!(secrets(&format!("token={JWT}&x=1")), vec![JWT]);
        assert_eq!(secrets(&format!("\"{JWT}\".")), vec![JWT]);
        let unsigned = "eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.";
        assert_eq!(secrets(unsigned), vec![unsigned]);
        let jwe = "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..S2lWVm9wY2w.ZGF0YQ.dGFn";
        assert_eq!(secrets(jwe), vec![jwe]);
        for s in [
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0",
            "xeyJhbGciOiJIUzI1NiJ9.a.b",
            "eyJ.a.b",
            "keyJaaaaaaaaaaaa.b.c",
        ] {
            assert!(secrets(s).is_empty(), "{s} -> {:?}", secrets(s));
        }
    }

    #[test]
    fn github_and_slack() {
        let gh = "ghp_16C7e42F292c6912E7710c838347Ae178B4a";
        assert_eq!(secrets(&format!("GITHUB_TOKEN={gh}")), vec![gh]);
        let pat = "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGHIJKLMNOPQRSTUV";
        assert_eq!(secrets(pat), vec![pat]);
        let xoxb = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx";
        assert_eq!(secrets(&format!("SLACK_BOT_TOKEN: {xoxb}")), vec![xoxb]);
        for s in [
            "ghp_short",
            "ghx_16C7e42F292c6912E7710c838347Ae178B4a",
            "xoxb-",
            "xoxb-abcdefghijkl",
            "xoxz-123456789012",
        ] {
            assert!(secrets(s).is_empty(), "{s} -> {:?}", secrets(s));
        }
    }
}
