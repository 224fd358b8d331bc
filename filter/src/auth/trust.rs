//! Trust mode: the claims Envoy's `jwt_authn` filter (Istio `RequestAuthentication`) verified,
//! taken from the request's dynamic metadata instead of verifying the token again.
//!
//! `jwt_authn` writes a verified payload (`payload_in_metadata`) under the namespace
//! `envoy.filters.http.jwt_authn` as a `google.protobuf.Struct`. Envoy hands the wasm filter the
//! request's dynamic metadata (property `metadata`) as a serialized `envoy.config.core.v3.Metadata`
//! message, decoded here with prost. Clients cannot write dynamic metadata; issuer, audience and
//! lifetime are checked again on the payload.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use prost::Message;
use prost_types::value::Kind;
use serde_json::{Map, Number, Value};

use crate::auth::failure::AuthFailure;
use crate::auth::settings::IdentityConfig;
use crate::auth::token::Claims;

pub const NAMESPACE: &str = "envoy.filters.http.jwt_authn";

/// The part of `envoy.config.core.v3.Metadata` read here (field 1, `filter_metadata`).
#[derive(Clone, PartialEq, Message)]
struct Metadata {
    #[prost(map = "string, message", tag = "1")]
    filter_metadata: HashMap<String, prost_types::Struct>,
}

/// The payload `jwt_authn` verified, from the serialized dynamic metadata; `None` when it
/// verified none (no token, or a route that does not require one).
pub fn payload(metadata: &[u8], key: &str) -> Result<Option<Map<String, Value>>, String> {
    let metadata =
        Metadata::decode(metadata).map_err(|e| format!("dynamic metadata not decodable: {e}"))?;
    let Some(fields) = metadata.filter_metadata.get(NAMESPACE) else {
        return Ok(None);
    };
    match fields.fields.get(key).and_then(|v| v.kind.as_ref()) {
        None => Ok(None),
        Some(Kind::StructValue(s)) => Ok(Some(object(&s.fields))),
        Some(_) => Err(format!("{NAMESPACE}.{key} is not a JWT payload")),
    }
}

fn object(fields: &BTreeMap<String, prost_types::Value>) -> Map<String, Value> {
    fields.iter().map(|(k, v)| (k.clone(), json(v))).collect()
}

/// A `Struct` value as JSON. Struct numbers are doubles: whole ones become integers again
/// (`exp`, `iat`), as they were in the token.
fn json(value: &prost_types::Value) -> Value {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
            Value::Number(Number::from(*n as i64))
        }
        Some(Kind::NumberValue(n)) => Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Some(Kind::StructValue(s)) => Value::Object(object(&s.fields)),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json).collect()),
    }
}

/// The claims of a payload `jwt_authn` verified, after checking the issuer and audience this
/// filter is configured for, the lifetime (with the clock skew) and the subject.
pub fn claims(
    payload: Map<String, Value>,
    cfg: &IdentityConfig,
    now: Duration,
) -> Result<Claims, AuthFailure> {
    let claims: Claims =
        serde_json::from_value(Value::Object(payload)).map_err(|_| AuthFailure::Malformed)?;
    if claims.issuer.as_deref() != Some(cfg.issuer.as_str()) {
        return Err(AuthFailure::WrongIssuer);
    }
    let audiences: HashSet<String> = claims
        .audiences
        .clone()
        .map(|a| a.into_set())
        .unwrap_or_default();
    if !cfg.audiences.iter().any(|a| audiences.contains(a)) {
        return Err(AuthFailure::WrongAudience);
    }
    let (now, skew) = (now.as_secs(), cfg.clock_skew.as_secs());
    let expires_at = claims.expires_at.ok_or(AuthFailure::MissingExp)?.as_secs();
    if expires_at.saturating_add(skew) <= now {
        return Err(AuthFailure::Expired);
    }
    if claims
        .invalid_before
        .is_some_and(|nbf| nbf.as_secs() > now.saturating_add(skew))
    {
        return Err(AuthFailure::NotYetValid);
    }
    if claims.subject.as_deref().is_none_or(str::is_empty) {
        return Err(AuthFailure::MissingSub);
    }
    Ok(claims)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::auth::token::tests::{identity_config, NOW};
    use serde_json::json;

    fn value(v: &Value) -> prost_types::Value {
        let kind = match v {
            Value::Null => Kind::NullValue(0),
            Value::Bool(b) => Kind::BoolValue(*b),
            Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap()),
            Value::String(s) => Kind::StringValue(s.clone()),
            Value::Array(a) => Kind::ListValue(prost_types::ListValue {
                values: a.iter().map(value).collect(),
            }),
            Value::Object(o) => Kind::StructValue(structure(o)),
        };
        prost_types::Value { kind: Some(kind) }
    }

    fn structure(o: &Map<String, Value>) -> prost_types::Struct {
        prost_types::Struct {
            fields: o.iter().map(|(k, v)| (k.clone(), value(v))).collect(),
        }
    }

    /// Serialized metadata as Envoy hands it over: `namespace` → {`key`: payload}.
    pub fn metadata(namespace: &str, key: &str, payload: Value) -> Vec<u8> {
        let inner = json!({ key: payload });
        Metadata {
            filter_metadata: HashMap::from([(
                namespace.to_string(),
                structure(inner.as_object().unwrap()),
            )]),
        }
        .encode_to_vec()
    }

    fn payload_claims() -> Value {
        json!({"iss": "https://idp.example", "aud": ["acp", "other"], "sub": "alice", "exp": NOW + 60,
               "iat": NOW, "scp": ["a", "b"], "realm_access": {"roles": ["admin"]}, "ratio": 0.5})
    }

    #[test]
    fn reads_the_verified_payload_back_as_json() {
        let bytes = metadata(NAMESPACE, "jwt_payload", payload_claims());
        let got = payload(&bytes, "jwt_payload").unwrap().unwrap();
        assert_eq!(Value::Object(got), payload_claims());
        assert_eq!(payload(&bytes, "other_key").unwrap(), None);
        assert_eq!(
            payload(
                &metadata("envoy.lb", "jwt_payload", payload_claims()),
                "jwt_payload"
            )
            .unwrap(),
            None
        );
        assert_eq!(
            payload(&[], "jwt_payload").unwrap(),
            None,
            "no dynamic metadata at all"
        );
        assert!(payload(&metadata(NAMESPACE, "k", json!("str")), "k").is_err());
        assert!(payload(&[0xff, 0xff, 0xff], "k").is_err());
    }

    #[test]
    fn checks_issuer_audience_lifetime_and_subject() {
        let cfg = identity_config();
        let check = |over: Value| {
            let mut p = payload_claims();
            for (k, v) in over.as_object().unwrap() {
                if v.is_null() {
                    p.as_object_mut().unwrap().remove(k);
                } else {
                    p[k] = v.clone();
                }
            }
            claims(
                p.as_object().unwrap().clone(),
                &cfg,
                Duration::from_secs(NOW),
            )
        };
        let ok = check(json!({})).unwrap();
        assert_eq!(ok.subject.as_deref(), Some("alice"));
        assert_eq!(ok.custom["scp"], json!(["a", "b"]));
        assert!(check(json!({"aud": "acp"})).is_ok());
        assert!(
            check(json!({"exp": NOW - 59})).is_ok(),
            "within the clock skew"
        );
        let cases = [
            (
                json!({"iss": "https://evil.example"}),
                AuthFailure::WrongIssuer,
            ),
            (json!({"iss": null}), AuthFailure::WrongIssuer),
            (json!({"aud": "other"}), AuthFailure::WrongAudience),
            (json!({"aud": null}), AuthFailure::WrongAudience),
            (json!({"exp": null}), AuthFailure::MissingExp),
            (json!({"exp": NOW - 61}), AuthFailure::Expired),
            (json!({"nbf": NOW + 120}), AuthFailure::NotYetValid),
            (json!({"sub": null}), AuthFailure::MissingSub),
            (json!({"exp": "soon"}), AuthFailure::Malformed),
        ];
        for (over, want) in cases {
            assert_eq!(check(over.clone()).unwrap_err(), want, "{over}");
        }
    }
}
