//! The JWT attack table: crafted tokens, each refused with its reason. The end-to-end suite
//! (`tests/e2e/test_jwt_attacks.py`) sends the same attacks through Envoy.

use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_simple::prelude::{HS256Key, HS384Key, HS512Key, MACLike};
use serde_json::{json, Value};

use crate::auth::failure::AuthFailure;
use crate::auth::token::tests::{identity_config, TestIdp, NOW};
use crate::auth::token::{verify, Claims};
use AuthFailure::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn header() -> Value {
    json!({"alg": "RS256", "typ": "JWT", "kid": "k1"})
}

fn claims() -> Value {
    json!({"iss": "https://idp.example", "aud": "acp", "sub": "alice", "iat": NOW, "nbf": NOW, "exp": NOW + 3600})
}

/// `base` with `changes` merged in (a null removes the member).
fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().into_iter().flatten() {
        match v {
            Value::Null => base.as_object_mut().map(|o| o.remove(k)),
            _ => base.as_object_mut().map(|o| o.insert(k.clone(), v.clone())),
        };
    }
    base
}

/// A token from raw header and payload bytes and a signature segment.
fn raw(header: &[u8], payload: &[u8], signature: &str) -> String {
    format!("{}.{}.{signature}", b64(header), b64(payload))
}

/// A token with `header` over the valid claims, carrying the signature of a genuine token
/// (so only what the attack changes is wrong).
fn reheader(idp: &TestIdp, header: Value) -> String {
    let genuine = idp.sign(json!({}));
    let signature = genuine.rsplit('.').next().unwrap_or_default().to_string();
    raw(
        header.to_string().as_bytes(),
        claims().to_string().as_bytes(),
        &signature,
    )
}

/// The genuine token's segment `index` replaced by `f` of it.
fn segment_edit(token: &str, index: usize, f: impl Fn(&str) -> String) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
    parts[index] = f(&parts[index]);
    parts.join(".")
}

/// Flips one bit of the decoded signature at byte `at`.
fn flip_signature_bit(token: &str, at: usize, bit: u8) -> String {
    segment_edit(token, 2, |s| {
        let mut sig = URL_SAFE_NO_PAD.decode(s).unwrap();
        sig[at] ^= 1 << bit;
        b64(&sig)
    })
}

fn hmac_confusion(idp: &TestIdp, alg: &str) -> String {
    let secret = idp.key.public_key().to_pem().unwrap();
    let claims: Claims = serde_json::from_value(claims()).unwrap();
    match alg {
        "HS256" => HS256Key::from_bytes(secret.as_bytes())
            .with_key_id("k1")
            .authenticate(claims),
        "HS384" => HS384Key::from_bytes(secret.as_bytes())
            .with_key_id("k1")
            .authenticate(claims),
        _ => HS512Key::from_bytes(secret.as_bytes())
            .with_key_id("k1")
            .authenticate(claims),
    }
    .unwrap()
}

fn nested(depth: usize) -> String {
    format!(
        r#"{{"iss":"https://idp.example","aud":"acp","sub":"alice","exp":{},"x":{}1{}}}"#,
        NOW + 3600,
        "[".repeat(depth),
        "]".repeat(depth)
    )
}

fn attacks(idp: &TestIdp) -> Vec<(&'static str, String, AuthFailure)> {
    let good = idp.sign(json!({}));
    let sig = good.rsplit('.').next().unwrap_or_default().to_string();
    let c = claims().to_string();
    let h = header().to_string();
    let with_header = |changes: Value| reheader(idp, with(header(), changes));
    vec![
        // Unsigned and algorithm confusion.
        (
            "alg none",
            raw(br#"{"alg":"none","typ":"JWT"}"#, c.as_bytes(), ""),
            UnsupportedAlg,
        ),
        (
            "alg None",
            raw(br#"{"alg":"None","typ":"JWT"}"#, c.as_bytes(), ""),
            UnsupportedAlg,
        ),
        (
            "alg NONE",
            raw(br#"{"alg":"NONE","typ":"JWT"}"#, c.as_bytes(), ""),
            UnsupportedAlg,
        ),
        (
            "alg nOnE, genuine signature kept",
            with_header(json!({"alg": "nOnE"})),
            UnsupportedAlg,
        ),
        ("alg empty", with_header(json!({"alg": ""})), UnsupportedAlg),
        (
            "alg lowercase rs256",
            with_header(json!({"alg": "rs256"})),
            UnsupportedAlg,
        ),
        ("alg missing", with_header(json!({"alg": null})), Malformed),
        (
            "HS256 keyed with the RSA public key",
            hmac_confusion(idp, "HS256"),
            UnsupportedAlg,
        ),
        (
            "HS384 keyed with the RSA public key",
            hmac_confusion(idp, "HS384"),
            UnsupportedAlg,
        ),
        (
            "HS512 keyed with the RSA public key",
            hmac_confusion(idp, "HS512"),
            UnsupportedAlg,
        ),
        (
            "PS256 relabel",
            with_header(json!({"alg": "PS256"})),
            UnsupportedAlg,
        ),
        (
            "ES256 relabel of an RSA kid",
            with_header(json!({"alg": "ES256"})),
            AlgMismatch,
        ),
        // Key selection.
        (
            "kid path traversal",
            with_header(json!({"kid": "../../../../../../dev/null"})),
            UnknownKid,
        ),
        (
            "kid SQL injection",
            with_header(json!({"kid": "x' UNION SELECT 'secret' --"})),
            UnknownKid,
        ),
        (
            "kid always-true SQL",
            with_header(json!({"kid": "' OR '1'='1"})),
            UnknownKid,
        ),
        (
            "kid NUL suffix",
            with_header(json!({"kid": "k1\u{0}"})),
            UnknownKid,
        ),
        (
            "kid not a string",
            with_header(json!({"kid": 1})),
            Malformed,
        ),
        (
            "jku pointing at an attacker JWKS",
            with_header(json!({"jku": "https://evil.example/jwks.json"})),
            UntrustedKeySource,
        ),
        (
            "x5u pointing at an attacker certificate",
            with_header(json!({"x5u": "https://evil.example/c.pem"})),
            UntrustedKeySource,
        ),
        (
            "jwk embedding an attacker key",
            with_header(json!({"jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k1"}})),
            UntrustedKeySource,
        ),
        (
            "x5c embedding an attacker certificate",
            with_header(json!({"x5c": ["MIIB"]})),
            UntrustedKeySource,
        ),
        // Critical extensions (RFC 7515 4.1.11).
        (
            "crit naming an unknown extension",
            with_header(json!({"crit": ["exp2"], "exp2": 1})),
            CriticalHeader,
        ),
        (
            "crit empty list",
            with_header(json!({"crit": []})),
            CriticalHeader,
        ),
        (
            "crit b64 (RFC 7797)",
            with_header(json!({"crit": ["b64"], "b64": false})),
            CriticalHeader,
        ),
        // Time and audience claims (genuinely signed).
        ("expired", idp.sign(json!({"exp": NOW - 3600})), Expired),
        (
            "nbf in the future",
            idp.sign(json!({"nbf": NOW + 3600})),
            NotYetValid,
        ),
        (
            "iat in the future",
            idp.sign(json!({"iat": NOW + 3600})),
            IssuedInFuture,
        ),
        (
            "wrong issuer",
            idp.sign(json!({"iss": "https://evil.example"})),
            WrongIssuer,
        ),
        ("no issuer", idp.sign(json!({"iss": null})), WrongIssuer),
        (
            "wrong audience",
            idp.sign(json!({"aud": "other"})),
            WrongAudience,
        ),
        (
            "audience array without ours",
            idp.sign(json!({"aud": ["other", "acp2"]})),
            WrongAudience,
        ),
        (
            "empty audience array",
            idp.sign(json!({"aud": []})),
            WrongAudience,
        ),
        // Signature.
        (
            "signature bit flip, first byte",
            flip_signature_bit(&good, 0, 7),
            BadSignature,
        ),
        (
            "signature bit flip, middle byte",
            flip_signature_bit(&good, 128, 0),
            BadSignature,
        ),
        (
            "signature bit flip, last byte",
            flip_signature_bit(&good, 255, 3),
            BadSignature,
        ),
        (
            "payload changed under a genuine signature",
            segment_edit(&good, 1, |_| {
                b64(with(claims(), json!({"sub": "admin"}))
                    .to_string()
                    .as_bytes())
            }),
            BadSignature,
        ),
        (
            "signature truncated",
            segment_edit(
                &good,
                2,
                |s| b64(&URL_SAFE_NO_PAD.decode(s).unwrap()[..250]),
            ),
            BadSignature,
        ),
        (
            "signature stripped",
            segment_edit(&good, 2, |_| String::new()),
            BadSignature,
        ),
        // Compact serialization.
        (
            "two segments",
            good.rsplit_once('.')
                .map(|(hp, _)| hp.to_string())
                .unwrap_or_default(),
            Malformed,
        ),
        (
            "five segments (JWE-like)",
            format!("{good}.AAAA.BBBB"),
            Malformed,
        ),
        ("four segments", format!("{good}.{sig}"), Malformed),
        (
            "padding on the signature",
            segment_edit(&good, 2, |s| format!("{s}==")),
            Malformed,
        ),
        (
            "padding on the header",
            raw(b"{\"alg\":\"RS256\",\"kid\":\"k1\"}", c.as_bytes(), &sig).replacen('.', "=.", 1),
            Malformed,
        ),
        (
            "standard base64 header",
            format!(
                "{}.{}.{sig}",
                STANDARD.encode(r#"{"alg":"RS256","kid":"k1","x":"??>"}"#),
                b64(c.as_bytes())
            ),
            Malformed,
        ),
        (
            "standard base64 character in the signature",
            segment_edit(&good, 2, |s| format!("+/{}", &s[2..])),
            Malformed,
        ),
        ("whitespace inside", good.replacen('.', ". ", 1), Malformed),
        // Size and depth.
        (
            "huge header",
            with_header(json!({"kid": "k".repeat(9000)})),
            TokenTooLarge,
        ),
        (
            "huge payload",
            raw(
                h.as_bytes(),
                with(claims(), json!({"pad": "x".repeat(9000)}))
                    .to_string()
                    .as_bytes(),
                &sig,
            ),
            TokenTooLarge,
        ),
        (
            "deeply nested claims",
            raw(h.as_bytes(), nested(1000).as_bytes(), &sig),
            Malformed,
        ),
        (
            "deeply nested header",
            raw(
                format!(
                    r#"{{"alg":"RS256","kid":"k1","x":{}{}}}"#,
                    "[".repeat(500),
                    "]".repeat(500)
                )
                .as_bytes(),
                c.as_bytes(),
                &sig,
            ),
            Malformed,
        ),
        // Encoding and ambiguity.
        (
            "non-UTF-8 payload",
            raw(h.as_bytes(), b"{\"sub\":\"\xff\xfe\"}", &sig),
            Malformed,
        ),
        (
            "non-UTF-8 header",
            raw(
                b"{\"alg\":\"RS256\",\"kid\":\"k\xc01\"}",
                c.as_bytes(),
                &sig,
            ),
            Malformed,
        ),
        (
            "payload not an object",
            raw(h.as_bytes(), b"[\"alice\"]", &sig),
            Malformed,
        ),
        (
            "duplicate sub",
            raw(
                h.as_bytes(),
                c.replacen('{', r#"{"sub":"admin","#, 1).as_bytes(),
                &sig,
            ),
            DuplicateClaim,
        ),
        (
            "duplicate aud",
            raw(
                h.as_bytes(),
                c.replacen('{', r#"{"aud":"other","#, 1).as_bytes(),
                &sig,
            ),
            DuplicateClaim,
        ),
        (
            "duplicate sub spelled with an escape",
            raw(
                h.as_bytes(),
                c.replacen('{', r#"{"\u0073ub":"admin","#, 1).as_bytes(),
                &sig,
            ),
            DuplicateClaim,
        ),
        (
            "duplicate alg in the header",
            raw(
                br#"{"alg":"none","alg":"RS256","kid":"k1"}"#,
                c.as_bytes(),
                &sig,
            ),
            DuplicateClaim,
        ),
    ]
}

#[test]
fn every_crafted_token_is_refused_with_its_reason() {
    let idp = TestIdp::new();
    let cases = attacks(&idp);
    assert!(cases.len() >= 40, "{} cases", cases.len());
    let cfg = identity_config();
    let mut wrong = Vec::new();
    for (name, token, want) in &cases {
        let got = verify(token, &idp.keys, &cfg, Duration::from_secs(NOW)).err();
        if got != Some(*want) {
            wrong.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn the_controls_pass() {
    let idp = TestIdp::new();
    let cfg = identity_config();
    let now = Duration::from_secs(NOW);
    for ok in [
        idp.sign(json!({})),
        idp.sign(json!({"iat": NOW + 59})),
        idp.sign(json!({"aud": ["other", "acp"]})),
    ] {
        assert!(verify(&ok, &idp.keys, &cfg, now).is_ok(), "{ok}");
    }
}
