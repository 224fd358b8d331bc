//! The shell driven through a [`FakeHost`]: what it asks of Envoy for each callback.

use std::time::Duration;

use proxy_wasm::types::{Action, BufferType, MapType};
use serde_json::{json, Value};
use sha2::Digest;

use super::fake_host::FakeHost;
use super::plugin::Plugin;
use super::stream::Stream;
use crate::auth::keys::jwks::tests::ec_jwk;
use crate::auth::token::tests::{TestIdp, NOW};
use crate::auth::trust::tests::metadata;
use crate::auth::trust::NAMESPACE;
use crate::config::tests::minimal;

const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"salesforce.query","arguments":{"q":"x"}}}"#;

fn host() -> FakeHost {
    let host = FakeHost::default();
    host.state().now = Duration::from_secs(NOW);
    host
}

/// A plugin configured with `config`.
fn plugin(host: &FakeHost, config: &Value) -> Plugin<FakeHost> {
    let bytes = config.to_string();
    host.set_buffer(BufferType::PluginConfiguration, bytes.as_bytes());
    let mut plugin = Plugin::new(host.clone());
    assert!(plugin.configure(bytes.len()));
    plugin
}

/// A plugin whose remote JWKS (of `minimal()`) was fetched: `idp`'s keys.
fn plugin_with_keys(host: &FakeHost, config: &Value, idp: &TestIdp) -> Plugin<FakeHost> {
    let mut plugin = plugin(host, config);
    plugin.tick();
    let (token, _) = host.last_call_to("/jwks.json").unwrap();
    let size = host.call_answer(200, &idp.jwks.to_string());
    plugin.settle_call(token, size);
    plugin
}

/// Sends `body` as a request with `headers`: the actions of the header and body callbacks.
fn request(
    stream: &mut Stream<FakeHost>,
    host: &FakeHost,
    headers: &[(&str, &str)],
    body: &str,
) -> (Action, Action) {
    let mut all = vec![
        (":method", "POST"),
        (":path", "/mcp"),
        (":authority", "mcp.example"),
        ("content-type", "application/json"),
    ];
    all.extend_from_slice(headers);
    host.set_map(MapType::HttpRequestHeaders, &all);
    let on_headers = stream.request_headers(false);
    host.set_buffer(BufferType::HttpRequestBody, body.as_bytes());
    (on_headers, stream.request_body(body.len(), true))
}

/// A call `authorization` allows, forwarded, whose JSON answer's headers have just arrived:
/// its stream, and what the filter did with the headers.
fn answer_headers_of_allowed_call(
    plugin: &Plugin<FakeHost>,
    host: &FakeHost,
    authorization: &str,
) -> (Stream<FakeHost>, Action) {
    let mut stream = plugin.new_stream().unwrap();
    request(&mut stream, host, &[("authorization", authorization)], CALL);
    host.set_map(
        MapType::HttpResponseHeaders,
        &[(":status", "200"), ("content-type", "application/json")],
    );
    let held = stream.response_headers(false);
    (stream, held)
}

/// One request without a token, to its end: refused with 401 (or 503), one record.
fn unauthenticated_call(plugin: &Plugin<FakeHost>, host: &FakeHost) -> (Action, u32) {
    let mut stream = plugin.new_stream().unwrap();
    let (_, action) = request(&mut stream, host, &[], CALL);
    stream.queue_records();
    let status = host.state().replies.last().unwrap().status;
    (action, status)
}

/// The value of Envoy counter (or gauge) `name` once the plugin has flushed what its VM counted.
fn counter(plugin: &Plugin<FakeHost>, host: &FakeHost, name: &str) -> i64 {
    plugin.flush_metrics();
    host.metric(name)
}

fn answer_audit_batch(plugin: &mut Plugin<FakeHost>, host: &FakeHost, status: u32) {
    let (token, _) = host.last_call_to(acp_record::INGEST_PATH).unwrap();
    let size = host.call_answer(status, "{}");
    plugin.settle_call(token, size);
}

#[test]
fn closed_mode_refuses_with_503_while_the_outbox_is_full_and_admits_again_once_delivered() {
    let host = host();
    let mut config = minimal();
    config["auditFailureMode"] = json!("closed");
    config["audit"]["maxBufferedRecords"] = json!(1);
    let mut plugin = plugin(&host, &config);

    assert_eq!(unauthenticated_call(&plugin, &host), (Action::Pause, 401));
    let (action, status) = unauthenticated_call(&plugin, &host);
    assert_eq!((action, status), (Action::Pause, 503));
    let refused = host.state().replies.last().unwrap().clone();
    assert!(
        refused.body.contains("audit_unavailable"),
        "{}",
        refused.body
    );
    assert!(refused
        .headers
        .contains(&("retry-after".to_string(), "5".to_string())));
    assert_eq!(
        counter(&plugin, &host, "acp.calls_refused_audit_unavailable"),
        1
    );

    plugin.tick();
    answer_audit_batch(&mut plugin, &host, 200);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_sent"), 1);
    assert_eq!(unauthenticated_call(&plugin, &host), (Action::Pause, 401));
}

#[test]
fn counters_are_summed_in_the_vm_and_reach_envoy_on_the_tick() {
    let host = host();
    let mut plugin = plugin(&host, &minimal());
    for _ in 0..3 {
        unauthenticated_call(&plugin, &host);
    }
    assert_eq!(host.metric("acp.auth_failed"), 0, "no host call per event");
    assert_eq!(host.metric("acp.audit_records_queued"), 0);
    plugin.tick();
    assert_eq!(host.metric("acp.auth_failed"), 3);
    assert_eq!(host.metric("acp.audit_records_queued"), 3);
    assert_eq!(host.metric("acp.audit_records_buffered"), 3);
    unauthenticated_call(&plugin, &host);
    assert!(!plugin.remove(), "records still buffered");
    assert_eq!(
        host.metric("acp.auth_failed"),
        4,
        "flushed when the plugin is removed"
    );
}

#[test]
fn a_held_answer_is_released_redacted_once_complete() {
    let host = host();
    let idp = TestIdp::new();
    let mut config = minimal();
    config["forwardIdentityHeaders"] = json!(true);
    let plugin = plugin_with_keys(&host, &config, &idp);
    let token = idp.sign(json!({"scope": "salesforce:read"}));
    let authorization = format!("Bearer {token}");
    let mut stream = plugin.new_stream().unwrap();
    let actions = request(
        &mut stream,
        &host,
        &[
            ("authorization", &authorization),
            ("accept-encoding", "gzip"),
        ],
        CALL,
    );
    assert_eq!(actions, (Action::Pause, Action::Continue));
    assert!(host.state().replies.is_empty());
    assert!(host
        .state()
        .removed
        .contains(&(true, "accept-encoding".to_string())));
    assert_eq!(
        host.state().set,
        [
            (
                true,
                "x-acp-tenant".to_string(),
                "org_acme_corp".to_string()
            ),
            (true, "x-acp-sub".to_string(), "alice".to_string())
        ]
    );

    host.set_map(
        MapType::HttpResponseHeaders,
        &[(":status", "200"), ("content-type", "application/json")],
    );
    assert_eq!(
        stream.response_headers(false),
        Action::Pause,
        "the headers wait with the answer"
    );
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "card 4111 1111 1111 1111"}})
        .to_string();
    let (first, _) = answer.split_at(20);
    host.set_buffer(BufferType::HttpResponseBody, first.as_bytes());
    assert_eq!(stream.response_body(first.len(), false), Action::Pause);
    assert!(host.state().replaced.is_empty());

    host.set_buffer(BufferType::HttpResponseBody, answer.as_bytes());
    assert_eq!(stream.response_body(answer.len(), true), Action::Continue);
    let (kind, released) = host.state().replaced.last().unwrap().clone();
    assert_eq!(kind, BufferType::HttpResponseBody);
    let released = String::from_utf8(released).unwrap();
    assert!(!released.contains("4111 1111 1111 1111"), "{released}");
    assert!(released.contains(r#""id":1"#), "{released}");
    assert_eq!(
        host.state().set.last(),
        Some(&(
            false,
            "content-length".to_string(),
            released.len().to_string()
        )),
        "the held headers go on with the new length"
    );
    assert!(host.state().removed.iter().all(|(request, _)| *request));

    stream.queue_records();
    assert_eq!(counter(&plugin, &host, "acp.calls_allowed"), 1);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_queued"), 1);
}

#[test]
fn an_answer_ended_by_trailers_is_scanned_when_they_arrive() {
    let host = host();
    let idp = TestIdp::new();
    let plugin = plugin_with_keys(&host, &minimal(), &idp);
    let authorization = format!("Bearer {}", idp.sign(json!({"scope": "salesforce:read"})));
    let (mut stream, held) = answer_headers_of_allowed_call(&plugin, &host, &authorization);
    assert_eq!(held, Action::Pause);
    let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "card 4111 1111 1111 1111"}})
        .to_string();
    host.set_buffer(BufferType::HttpResponseBody, answer.as_bytes());
    assert_eq!(stream.response_body(answer.len(), false), Action::Pause);
    assert!(host.state().replaced.is_empty());

    assert_eq!(stream.response_trailers(), Action::Continue);
    let (_, released) = host.state().replaced.last().unwrap().clone();
    let released = String::from_utf8(released).unwrap();
    assert!(released.contains("[REDACTED:payment_card]"), "{released}");
    stream.queue_records();
    assert_eq!(counter(&plugin, &host, "acp.audit_records_queued"), 1);
}

#[test]
fn an_answer_left_unchanged_keeps_its_headers_and_a_refused_one_gets_its_new_length() {
    let host = host();
    let idp = TestIdp::new();
    let mut config = minimal();
    config["scanning"] = json!({"maxScanBytes": 200, "oversized": "reject"});
    let plugin = plugin_with_keys(&host, &config, &idp);
    let authorization = format!("Bearer {}", idp.sign(json!({"scope": "salesforce:read"})));
    let call = |answer: &str| {
        let (mut stream, held) = answer_headers_of_allowed_call(&plugin, &host, &authorization);
        host.set_buffer(BufferType::HttpResponseBody, answer.as_bytes());
        (held, stream.response_body(answer.len(), true))
    };
    let response_headers_touched = || {
        let state = host.state();
        let set = state.set.iter().filter(|(request, ..)| !request).count();
        set + state.removed.iter().filter(|(request, _)| !request).count()
    };

    let clean = json!({"jsonrpc": "2.0", "id": 1, "result": {"ok": true}}).to_string();
    assert_eq!(call(&clean), (Action::Pause, Action::Continue));
    assert!(host.state().replaced.is_empty());
    assert_eq!(response_headers_touched(), 0, "content-length left as sent");

    let large = json!({"jsonrpc": "2.0", "id": 1, "result": {"text": "x".repeat(300)}}).to_string();
    assert_eq!(call(&large), (Action::Pause, Action::Continue));
    let (_, error) = host.state().replaced.last().unwrap().clone();
    assert!(String::from_utf8_lossy(&error).contains("error"));
    assert_eq!(
        host.state().set.last(),
        Some(&(false, "content-length".to_string(), error.len().to_string())),
    );
}

#[test]
fn the_remote_jwks_is_fetched_on_the_tick_and_its_keys_verify_tokens() {
    let host = host();
    let idp = TestIdp::new();
    let mut plugin = plugin(&host, &minimal());
    let token = format!("Bearer {}", idp.sign(json!({"scope": "salesforce:read"})));
    let mut before = plugin.new_stream().unwrap();
    request(&mut before, &host, &[("authorization", &token)], CALL);
    let refused = host.state().replies.pop().unwrap();
    assert_eq!(refused.status, 503);
    assert!(
        refused.body.contains("keys_unavailable"),
        "{}",
        refused.body
    );

    plugin.tick();
    let (call, fetch) = host.last_call_to("/jwks.json").unwrap();
    assert_eq!(fetch.cluster, "idp");
    assert_eq!(fetch.header(":method"), Some("GET"));
    assert_eq!(fetch.header(":authority"), Some("idp.example:9000"));
    assert_eq!(fetch.timeout, Duration::from_millis(2_000));
    let size = host.call_answer(500, "");
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.jwks_fetch_failed"), 1);

    host.advance(Duration::from_secs(60));
    plugin.tick();
    let (call, _) = host.last_call_to("/jwks.json").unwrap();
    let size = host.call_answer(200, &idp.jwks.to_string());
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.jwks_fetched"), 1);

    host.state().now = Duration::from_secs(NOW);
    let mut after = plugin.new_stream().unwrap();
    let actions = request(&mut after, &host, &[("authorization", &token)], CALL);
    assert_eq!(actions, (Action::Pause, Action::Continue));
    assert!(host.state().replies.is_empty());
}

#[test]
fn the_discovery_document_names_the_jwks_fetched_next() {
    let host = host();
    let mut config = minimal();
    config["identity"]["jwks"] = json!({"discovery": {"cluster": "idp"}});
    let mut plugin = plugin(&host, &config);

    plugin.tick();
    let (call, fetch) = host
        .last_call_to("/.well-known/openid-configuration")
        .unwrap();
    assert_eq!(fetch.header(":authority"), Some("idp.example"));
    let document = json!({"issuer": "https://idp.example", "jwks_uri": "https://idp.example/keys"});
    let size = host.call_answer(200, &document.to_string());
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.discovery_fetched"), 1);

    let (call, fetch) = host.last_call_to("/keys").unwrap();
    assert_eq!(fetch.cluster, "idp");
    let size = host.call_answer(200, &json!({"keys": [ec_jwk()]}).to_string());
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.jwks_fetched"), 1);
}

#[test]
fn a_failed_audit_batch_is_sent_again_on_the_tick_after_its_backoff() {
    let host = host();
    let mut plugin = plugin(&host, &minimal());
    assert_eq!(
        host.state().tick_period,
        Some(Duration::from_millis(20)),
        "small batches are looked for every 20 ms"
    );
    assert_eq!(unauthenticated_call(&plugin, &host), (Action::Pause, 401));
    assert_eq!(counter(&plugin, &host, "acp.auth_failed"), 1);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_buffered"), 1);

    plugin.tick();
    let (_, batch) = host.last_call_to(acp_record::INGEST_PATH).unwrap();
    assert_eq!(batch.cluster, "collector");
    assert_eq!(batch.header(":method"), Some("POST"));
    assert_eq!(batch.header("authorization"), Some("Bearer t"));
    assert_eq!(batch.header("content-type"), Some("application/json"));
    let records: Value = serde_json::from_str(&batch.body_text()).unwrap();
    assert_eq!(records["records"][0]["reason"], "missing_token");
    answer_audit_batch(&mut plugin, &host, 503);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_retried"), 1);

    plugin.tick();
    assert_eq!(host.calls_to(acp_record::INGEST_PATH), 1, "backing off");
    host.advance(Duration::from_millis(100));
    plugin.tick();
    assert_eq!(host.calls_to(acp_record::INGEST_PATH), 2);
    answer_audit_batch(&mut plugin, &host, 200);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_sent"), 1);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_buffered"), 0);
}

#[test]
fn the_policy_document_is_sent_until_the_collector_stored_it() {
    let host = host();
    let mut plugin = plugin(&host, &minimal());
    plugin.tick();
    let (call, policy) = host.last_call_to(acp_record::POLICY_PATH).unwrap();
    assert_eq!(policy.header("authorization"), Some("Bearer t"));
    assert!(!policy.body_text().contains("ingestToken"));
    let size = host.call_answer(503, "");
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.policy_versions_retried"), 1);

    host.advance(Duration::from_secs(1));
    plugin.tick();
    let (call, _) = host.last_call_to(acp_record::POLICY_PATH).unwrap();
    let size = host.call_answer(201, "");
    plugin.settle_call(call, size);
    assert_eq!(counter(&plugin, &host, "acp.policy_versions_sent"), 1);
    plugin.tick();
    assert_eq!(host.calls_to(acp_record::POLICY_PATH), 2);
}

#[test]
fn a_removed_plugin_reports_done_once_its_records_are_delivered() {
    let host = host();
    let mut plugin = plugin(&host, &minimal());
    unauthenticated_call(&plugin, &host);
    assert!(!plugin.remove());
    plugin.tick();
    assert!(!host.state().done);
    answer_audit_batch(&mut plugin, &host, 200);
    assert!(host.state().done);
}

#[test]
fn trust_mode_takes_the_identity_from_the_payload_jwt_authn_verified() {
    let host = host();
    let mut config = minimal();
    config["identity"]["jwks"] = json!({"trustJwtAuthn": {"payloadInMetadata": "jwt_payload"}});
    let mut plugin = plugin(&host, &config);
    plugin.tick();
    assert_eq!(host.calls_to("/jwks.json"), 0, "no keys are fetched");

    let payload = json!({"iss": "https://idp.example", "aud": ["acp"], "sub": "alice",
        "exp": NOW + 60, "iat": NOW, "scope": "salesforce:read"});
    host.state().metadata = Some(metadata(NAMESPACE, "jwt_payload", payload));
    let mut verified = plugin.new_stream().unwrap();
    let actions = request(&mut verified, &host, &[], CALL);
    assert_eq!(actions, (Action::Pause, Action::Continue));
    assert!(host.state().replies.is_empty());

    host.state().metadata = None;
    let mut unverified = plugin.new_stream().unwrap();
    request(&mut unverified, &host, &[], CALL);
    assert_eq!(host.state().replies.last().unwrap().status, 401);
}

#[test]
fn records_carry_the_correlation_headers_and_the_source_address_envoy_resolved() {
    let host = host();
    let idp = TestIdp::new();
    let mut plugin = plugin_with_keys(&host, &minimal(), &idp);
    host.state().source_address = Some(b"203.0.113.7:0".to_vec());
    let token = format!("Bearer {}", idp.sign(json!({"scope": "salesforce:read"})));
    let correlation = [
        ("mcp-session-id", "4f3c2a9e-session"),
        ("x-request-id", "0b7c8a61-request"),
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("user-agent", "claude-code/2.0\u{7f}"),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let mut allowed = plugin.new_stream().unwrap();
    let mut headers = vec![("authorization", token.as_str())];
    headers.extend(correlation);
    request(&mut allowed, &host, &headers, CALL);
    host.set_map(MapType::HttpResponseHeaders, &[(":status", "200")]);
    allowed.response_headers(true);
    allowed.queue_records();
    let mut refused = plugin.new_stream().unwrap();
    request(&mut refused, &host, &[], CALL);
    refused.queue_records();

    plugin.tick();
    let (_, batch) = host.last_call_to(acp_record::INGEST_PATH).unwrap();
    let batch: Value = serde_json::from_str(&batch.body_text()).unwrap();
    let records = batch["records"].as_array().unwrap();
    let sent = json!({
        "sessionId": "4f3c2a9e-session",
        "requestId": "0b7c8a61-request",
        "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
        "spanId": "00f067aa0ba902b7",
        "sourceAddress": "203.0.113.7:0",
        "userAgent": "claude-code/2.0\u{FFFD}",
        "protocolVersion": "2025-06-18",
    });
    assert_eq!(records[0]["event"], "tool.call");
    assert_eq!(records[1]["event"], "auth.failed");
    for (field, value) in sent.as_object().unwrap() {
        assert_eq!(&records[0][field], value, "{field}");
        let bare = if field == "sourceAddress" {
            value
        } else {
            &Value::Null
        };
        assert_eq!(
            &records[1][field], bare,
            "{field} of the request without the headers"
        );
    }
}

#[test]
fn record_ids_are_uuidv7_of_the_clock_read_at_the_end_and_ordered_within_a_millisecond() {
    let host = host();
    let mut plugin = plugin_with_keys(&host, &minimal(), &TestIdp::new());
    host.state().now = Duration::from_millis(NOW * 1000 + 123);
    for _ in 0..50 {
        unauthenticated_call(&plugin, &host);
    }
    plugin.tick();
    let (_, batch) = host.last_call_to(acp_record::INGEST_PATH).unwrap();
    let batch: Value = serde_json::from_str(&batch.body_text()).unwrap();
    let ids: Vec<uuid::Uuid> = batch["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 50);
    for id in &ids {
        assert_eq!(id.get_version_num(), 7);
        let (seconds, nanos) = id.get_timestamp().unwrap().to_unix();
        assert_eq!((seconds, nanos / 1_000_000), (NOW, 123));
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
}

#[test]
fn under_buffer_pressure_records_shed_their_input_before_any_is_dropped() {
    let host = host();
    let idp = TestIdp::new();
    let mut config = minimal();
    config["audit"]["maxBufferedBytes"] = json!(3000);
    config["audit"]["maxInputBytes"] = json!(1024);
    let mut plugin = plugin_with_keys(&host, &config, &idp);
    let authorization = format!("Bearer {}", idp.sign(json!({"scope": "salesforce:read"})));
    let arguments = json!({"q": "x".repeat(3000)});
    let text = arguments.to_string();
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": "salesforce.query", "arguments": arguments}})
    .to_string();
    for _ in 0..3 {
        let mut stream = plugin.new_stream().unwrap();
        let actions = request(
            &mut stream,
            &host,
            &[("authorization", &authorization)],
            &body,
        );
        assert_eq!(actions, (Action::Pause, Action::Continue));
        stream.queue_records();
    }
    assert_eq!(counter(&plugin, &host, "acp.audit_records_queued"), 2);
    assert_eq!(counter(&plugin, &host, "acp.audit_inputs_shed"), 1);
    assert_eq!(counter(&plugin, &host, "acp.audit_records_dropped"), 1);

    plugin.tick();
    let (_, batch) = host.last_call_to(acp_record::INGEST_PATH).unwrap();
    let batch: Value = serde_json::from_str(&batch.body_text()).unwrap();
    let records = batch["records"].as_array().unwrap();
    let sha256 = format!("{:x}", sha2::Sha256::digest(text.as_bytes()));
    assert_eq!(records.len(), 2);
    for (record, reason) in records.iter().zip(["truncated", "buffer_pressure"]) {
        assert_eq!(record["input"], Value::Null);
        let summary = &record["inputSummary"];
        assert_eq!(summary["bytes"], text.len());
        assert_eq!(summary["sha256"], sha256.as_str());
        assert_eq!(summary["reason"], reason);
    }
    assert_eq!(records[0]["inputSummary"]["prefix"], &text[..1024]);
    assert_eq!(records[1]["inputSummary"].get("prefix"), None);
}
