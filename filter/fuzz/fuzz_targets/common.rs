//! The configuration every target runs under: the filter's defaults with one tool and an
//! inline JWKS holding the RFC 7515 A.3 P-256 key.

use acp_filter::config::{self, Config};

pub const EC_JWK: &str = r#"{"kty":"EC","crv":"P-256","kid":"ec1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

pub fn config() -> Config {
    let text = format!(
        r#"{{"tenant":"t","identity":{{"issuer":"https://idp.example","audiences":["acp"],"jwks":{{"inline":{{"keys":[{EC_JWK}]}}}}}},
            "tools":{{"salesforce.query":["salesforce:read"]}},"audit":{{"cluster":"c","ingestToken":"t"}}}}"#
    );
    match config::parse(text.as_bytes()) {
        Ok(cfg) => cfg,
        Err(e) => unreachable!("fuzz configuration: {e}"),
    }
}
