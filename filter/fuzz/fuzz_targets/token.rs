//! Bearer header parsing, the token's form checks and full verification on arbitrary input.
#![no_main]

use std::time::Duration;

use acp_filter::auth::form as jws_form;
use acp_filter::auth::keys::jwks::KeySet;
use acp_filter::auth::token;
use acp_filter::config::Config;
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

thread_local! {
    static SETUP: (Config, KeySet) = {
        let jwks = format!(r#"{{"keys":[{}]}}"#, common::EC_JWK);
        match KeySet::from_jwks_bytes(jwks.as_bytes()) {
            Ok(keys) => (common::config(), keys),
            Err(e) => unreachable!("fuzz JWKS: {e}"),
        }
    };
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = token::bearer_token(Some(text));
    let _ = jws_form::check(text);
    SETUP.with(|(cfg, keys)| {
        token::verify(
            text,
            keys,
            &cfg.identity,
            Duration::from_secs(1_800_000_000),
        )
        .ok()
    });
    let _ = KeySet::from_jwks_bytes(data);
});
