//! Project Wycheproof signature vectors (`tests/wycheproof/`) against the filter's own JWS
//! signature verification, `jwks::Key::verify`: every `valid` vector must verify and every
//! `invalid` one must not. Also built for wasm32-wasip1 and run in Node.js (`make test-wasm`).
//!
//! - RSA keys are built with `RsaKey::from_components`; the JWKS policy (2048-4096 bits, e =
//!   65537) is checked separately: the JWKS loader must take exactly the e = 65537 keys.
//! - `acceptable` vectors (a `DigestInfo` without the NULL parameter) are rejected: verification
//!   accepts only the one DER encoding of RFC 8017.
//! - ECDSA vectors carry DER signatures while JWS carries `r || s`: a signature is converted
//!   when it is strict DER with `r` and `s` of at most 32 bytes; otherwise it cannot appear in a
//!   token and counts as rejected (the vector must then be `invalid`).

// Test helpers outside #[test] functions are not covered by clippy.toml's allow-*-in-tests.
#![allow(clippy::unwrap_used, clippy::panic)]

use acp_filter::auth::keys::jwks::{Key, KeySet};
use acp_filter::auth::signature::RsaKey;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use der::asn1::UintRef;
use der::{Decode as _, Reader as _, SliceReader};
use serde_json::{json, Value};

const RSA_FILES: [(&str, &str); 3] = [
    (
        "2048",
        include_str!("../../tests/wycheproof/rsa_signature_2048_sha256_test.json"),
    ),
    (
        "3072",
        include_str!("../../tests/wycheproof/rsa_signature_3072_sha256_test.json"),
    ),
    (
        "4096",
        include_str!("../../tests/wycheproof/rsa_signature_4096_sha256_test.json"),
    ),
];
const ECDSA_FILE: &str = include_str!("../../tests/wycheproof/ecdsa_secp256r1_sha256_test.json");

fn hex(v: &Value) -> Vec<u8> {
    base16ct::mixed::decode_vec(v.as_str().unwrap()).unwrap()
}

/// The test groups of a vector file, after checking its algorithm.
fn groups(file: &str, algorithm: &str) -> Vec<Value> {
    let doc: Value = serde_json::from_str(file).unwrap();
    assert_eq!(doc["algorithm"], algorithm);
    doc["testGroups"].as_array().unwrap().clone()
}

/// Checks every test of `group` with `verify` and returns how many there were.
fn check_group(group: &Value, what: &str, mut verify: impl FnMut(&[u8], &[u8]) -> bool) -> usize {
    let tests = group["tests"].as_array().unwrap();
    for t in tests {
        let expected = match t["result"].as_str().unwrap() {
            "valid" => true,
            "invalid" | "acceptable" => false,
            other => panic!("unknown result {other}"),
        };
        assert_eq!(
            verify(&hex(&t["msg"]), &hex(&t["sig"])),
            expected,
            "{what} tcId {} ({}, {})",
            t["tcId"],
            t["comment"],
            t["result"]
        );
    }
    tests.len()
}

#[test]
fn rsa_pkcs1_sha256_vectors() {
    for (bits, file) in RSA_FILES {
        let mut count = 0;
        for group in groups(file, "RSASSA-PKCS1-v1_5") {
            assert_eq!(group["sha"], "SHA-256");
            let (n, e) = (
                hex(&group["publicKey"]["modulus"]),
                hex(&group["publicKey"]["publicExponent"]),
            );
            let key = Key::Rs256(Box::new(RsaKey::from_components(&n, &e).unwrap()));
            let from_jwks = KeySet::from_jwks_value(&json!({"keys": [group["keyJwk"]]}));
            assert_eq!(
                from_jwks.is_ok(),
                e == [1, 0, 1],
                "JWKS policy for e = {e:?}"
            );
            count += check_group(&group, &format!("RSA {bits}"), |msg, sig| {
                key.verify(msg, sig)
            });
        }
        println!("RSA {bits}: {count} vectors agree");
    }
}

/// `r || s` of a strict-DER ECDSA signature whose integers fit in 32 bytes.
fn der_to_jws(sig: &[u8]) -> Option<Vec<u8>> {
    let mut reader = SliceReader::new(sig).ok()?;
    let (r, s) = reader
        .sequence(|seq| Ok::<_, der::Error>((UintRef::decode(seq)?, UintRef::decode(seq)?)))
        .ok()?;
    reader.finish().ok()?;
    let mut raw = vec![0u8; 64];
    for (half, int) in raw.chunks_mut(32).zip([r, s]) {
        let bytes = int.as_bytes();
        half.get_mut(32usize.checked_sub(bytes.len())?..)?
            .copy_from_slice(bytes);
    }
    Some(raw)
}

#[test]
fn ecdsa_p256_sha256_vectors() {
    let (mut count, mut not_jws) = (0, 0);
    for group in groups(ECDSA_FILE, "ECDSA") {
        assert_eq!(
            (group["sha"].as_str(), group["publicKey"]["curve"].as_str()),
            (Some("SHA-256"), Some("secp256r1"))
        );
        let coordinate = |name: &str| {
            let bytes = hex(&group["publicKey"][name]);
            let trimmed = &bytes[bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len())..];
            let mut out = vec![0u8; 32 - trimmed.len()];
            out.extend_from_slice(trimmed);
            URL_SAFE_NO_PAD.encode(out)
        };
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "x": coordinate("wx"), "y": coordinate("wy")});
        let keys = KeySet::from_jwks_value(&json!({"keys": [jwk]})).unwrap();
        let key = keys.get(None).unwrap();
        count += check_group(&group, "ECDSA P-256", |msg, sig| match der_to_jws(sig) {
            Some(raw) => key.verify(msg, &raw),
            None => {
                not_jws += 1;
                false
            }
        });
    }
    println!("ECDSA P-256: {count} vectors agree ({not_jws} not representable as JWS r || s)");
}
