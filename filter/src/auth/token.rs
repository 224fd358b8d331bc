//! Bearer-token verification: algorithm and key selection, signature (`signature`, over keys
//! parsed once), then issuer, audience and time checks, each failure mapped to the reason written
//! in the audit record. The header and claims are read with jwt-simple's types and checked as
//! jwt-simple's verifier checks them.

use std::collections::HashSet;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jwt_simple::prelude::{JWTClaims, Token, UnixTimeStamp};
use serde_json::{Map, Value};

use crate::auth::failure::AuthFailure;
use crate::auth::keys::jwks::KeySet;
use crate::auth::settings::IdentityConfig;

/// Claims of a verified token: the registered ones parsed by jwt-simple, the rest as JSON.
pub type Claims = JWTClaims<Map<String, Value>>;

/// The token of an `Authorization: Bearer <token>` header value (scheme case-insensitive).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthFailure> {
    let value = authorization.ok_or(AuthFailure::MissingToken)?.trim();
    let (scheme, token) = value.split_once(' ').ok_or(AuthFailure::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthFailure::MissingToken);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthFailure::MissingToken);
    }
    Ok(token)
}

/// Verifies `token` against `keys` at time `now` (since the Unix epoch).
pub fn verify(
    token: &str,
    keys: &KeySet,
    cfg: &IdentityConfig,
    now: Duration,
) -> Result<Claims, AuthFailure> {
    crate::auth::form::check(token)?;
    let meta = Token::decode_metadata(token).map_err(|_| AuthFailure::Malformed)?;
    let alg = meta.algorithm();
    if alg != "RS256" && alg != "ES256" {
        return Err(AuthFailure::UnsupportedAlg);
    }
    let key = keys.get(meta.key_id()).ok_or(AuthFailure::UnknownKid)?;
    if key.alg() != alg {
        return Err(AuthFailure::AlgMismatch);
    }
    // `typ`, when present, must say JWT (`crit` and oversized tokens are refused by `jws_form`).
    let not_jwt = meta.signature_type().is_some_and(|t| {
        let t = t.to_uppercase();
        t != "JWT" && !t.ends_with("+JWT")
    });
    if not_jwt {
        return Err(AuthFailure::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthFailure::Malformed);
    };
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| AuthFailure::Malformed)?;
    let signing_input = &token.as_bytes()[..header.len() + 1 + payload.len()];
    if !key.verify(signing_input, &signature) {
        return Err(AuthFailure::BadSignature);
    }
    let payload = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| AuthFailure::Malformed)?;
    let claims: Claims = serde_json::from_slice(&payload).map_err(|_| AuthFailure::Malformed)?;
    check_claims(&claims, cfg, now)?;
    if claims.expires_at.is_none() {
        return Err(AuthFailure::MissingExp);
    }
    if claims.subject.as_deref().is_none_or(str::is_empty) {
        return Err(AuthFailure::MissingSub);
    }
    Ok(claims)
}

/// The time, issuer and audience checks of jwt-simple's `JWTClaims::validate`, in its order.
fn check_claims(claims: &Claims, cfg: &IdentityConfig, now: Duration) -> Result<(), AuthFailure> {
    let now = UnixTimeStamp::from(now);
    let skew = UnixTimeStamp::from(cfg.clock_skew);
    if claims.issued_at.is_some_and(|iat| iat > now + skew) {
        return Err(AuthFailure::IssuedInFuture);
    }
    if claims.invalid_before.is_some_and(|nbf| now + skew < nbf) {
        return Err(AuthFailure::NotYetValid);
    }
    if claims
        .expires_at
        .is_some_and(|exp| now < skew || now - skew > exp)
    {
        return Err(AuthFailure::Expired);
    }
    if claims.issuer.as_deref() != Some(cfg.issuer.as_str()) {
        return Err(AuthFailure::WrongIssuer);
    }
    let allowed: HashSet<String> = cfg.audiences.iter().cloned().collect();
    if !claims
        .audiences
        .as_ref()
        .is_some_and(|a| a.contains(&allowed))
    {
        return Err(AuthFailure::WrongAudience);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::settings::RawIdentity;
    use jwt_simple::prelude::{RS256KeyPair, RSAKeyPairLike};
    use serde_json::json;

    pub const NOW: u64 = 1_800_000_000;

    /// A test identity provider: an RSA key pair and its JWKS.
    pub struct TestIdp {
        pub key: RS256KeyPair,
        pub keys: KeySet,
        /// The JWKS document of `keys`.
        pub jwks: Value,
    }

    impl TestIdp {
        pub fn new() -> Self {
            let key = RS256KeyPair::generate(2048).unwrap().with_key_id("k1");
            let c = key.public_key().to_components();
            let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256",
                "n": URL_SAFE_NO_PAD.encode(c.n), "e": URL_SAFE_NO_PAD.encode(c.e)}]});
            TestIdp {
                key,
                keys: KeySet::from_jwks_value(&jwks).unwrap(),
                jwks,
            }
        }

        /// Signs `claims` (merged over valid defaults) as an RS256 JWT.
        pub fn sign(&self, claims: Value) -> String {
            let mut all = json!({"iss": "https://idp.example", "aud": "acp", "sub": "alice",
                "iat": NOW, "nbf": NOW, "exp": NOW + 3600});
            for (k, v) in claims.as_object().unwrap() {
                if v.is_null() {
                    all.as_object_mut().unwrap().remove(k);
                } else {
                    all[k] = v.clone();
                }
            }
            let claims: Claims = serde_json::from_value(all).unwrap();
            self.key.sign(claims).unwrap()
        }
    }

    /// The identity settings of the configuration tests' minimal configuration.
    pub fn identity_config() -> IdentityConfig {
        let raw: RawIdentity = serde_json::from_value(json!({
            "issuer": "https://idp.example",
            "audiences": ["acp"],
            "jwks": {"remote": {"cluster": "idp", "uri": "http://idp.example:9000/jwks.json"}}
        }))
        .unwrap();
        IdentityConfig::try_from(raw).unwrap()
    }

    fn check(idp: &TestIdp, token: &str) -> Result<Claims, AuthFailure> {
        verify(
            token,
            &idp.keys,
            &identity_config(),
            Duration::from_secs(NOW),
        )
    }

    #[test]
    fn valid_token_yields_its_claims() {
        let idp = TestIdp::new();
        let c = check(&idp, &idp.sign(json!({"email": "alice@acme.com"}))).unwrap();
        assert_eq!(c.subject.as_deref(), Some("alice"));
        assert_eq!(c.custom["email"], "alice@acme.com");
    }

    #[test]
    fn each_failure_has_its_reason() {
        let idp = TestIdp::new();
        let cases = [
            (json!({"exp": NOW - 61}), AuthFailure::Expired),
            (json!({"nbf": NOW + 120}), AuthFailure::NotYetValid),
            (
                json!({"iss": "https://evil.example"}),
                AuthFailure::WrongIssuer,
            ),
            (json!({"aud": "other"}), AuthFailure::WrongAudience),
            (json!({"aud": null}), AuthFailure::WrongAudience),
            (json!({"exp": null}), AuthFailure::MissingExp),
            (json!({"sub": null}), AuthFailure::MissingSub),
        ];
        for (claims, want) in cases {
            assert_eq!(
                check(&idp, &idp.sign(claims.clone())).unwrap_err(),
                want,
                "{claims}"
            );
        }
        // Within the 60 s clock skew.
        assert!(check(&idp, &idp.sign(json!({"exp": NOW - 59}))).is_ok());
        assert!(check(&idp, &idp.sign(json!({"aud": ["x", "acp"]}))).is_ok());
    }

    #[test]
    fn forged_tokens_are_refused() {
        let idp = TestIdp::new();
        let good = idp.sign(json!({}));
        let (head, rest) = good.split_once('.').unwrap();
        let (payload, sig) = rest.split_once('.').unwrap();

        let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"k1"}"#);
        assert_eq!(
            check(&idp, &format!("{none_header}.{payload}.")).err(),
            Some(AuthFailure::UnsupportedAlg)
        );
        let hs = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"k1"}"#);
        assert_eq!(
            check(&idp, &format!("{hs}.{payload}.{sig}")).err(),
            Some(AuthFailure::UnsupportedAlg)
        );
        let es = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"k1"}"#);
        assert_eq!(
            check(&idp, &format!("{es}.{payload}.{sig}")).err(),
            Some(AuthFailure::AlgMismatch)
        );
        let other_kid = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"k2"}"#);
        assert_eq!(
            check(&idp, &format!("{other_kid}.{payload}.{sig}")).err(),
            Some(AuthFailure::UnknownKid)
        );

        let mut flipped = sig.as_bytes().to_vec();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = format!("{head}.{payload}.{}", String::from_utf8(flipped).unwrap());
        assert_eq!(check(&idp, &flipped).err(), Some(AuthFailure::BadSignature));

        for bad in [
            "",
            "abc",
            "a.b",
            &format!("{good}.x"),
            "\u{ff}.\u{ff}.\u{ff}",
        ] {
            assert_eq!(
                check(&idp, bad).err(),
                Some(AuthFailure::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn es256_tokens_verify_against_an_ec_key() {
        use jwt_simple::prelude::{ECDSAP256KeyPairLike, ECDSAP256PublicKeyLike, ES256KeyPair};
        let key = ES256KeyPair::generate().with_key_id("e1");
        let point = key.public_key().public_key().to_bytes_uncompressed();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": "e1",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])}]});
        let keys = KeySet::from_jwks_value(&jwks).unwrap();
        let claims: Claims =
            serde_json::from_value(json!({"iss": "https://idp.example", "aud": "acp",
            "sub": "bob", "iat": NOW, "exp": NOW + 60}))
            .unwrap();
        let token = key.sign(claims).unwrap();
        let cfg = identity_config();
        let now = Duration::from_secs(NOW);
        assert_eq!(
            verify(&token, &keys, &cfg, now).unwrap().subject.as_deref(),
            Some("bob")
        );
        let mut tampered = token.clone().into_bytes();
        let i = tampered.len() - 10;
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).unwrap();
        assert_eq!(
            verify(&tampered, &keys, &cfg, now).err(),
            Some(AuthFailure::BadSignature)
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc")), Ok("abc"));
        assert_eq!(bearer_token(Some("bearer  abc ")), Ok("abc"));
        assert_eq!(bearer_token(None), Err(AuthFailure::MissingToken));
        assert_eq!(
            bearer_token(Some("Basic dXNlcg==")),
            Err(AuthFailure::MissingToken)
        );
        assert_eq!(bearer_token(Some("Bearer")), Err(AuthFailure::Malformed));
    }
}
