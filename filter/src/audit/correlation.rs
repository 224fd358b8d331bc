//! The correlation fields of a record: what joins it to the MCP session, Envoy's access log, a
//! distributed trace and the client that sent it. They are taken from the request as sent (or as
//! Envoy set them), bounded and with control characters replaced; they are correlation ids, never
//! identity, which comes from the verified token alone.

/// Longest `sessionId`, `requestId` and `sourceAddress` kept, in bytes (a UUID is 36).
pub const MAX_ID_BYTES: usize = 128;
/// Longest `userAgent` kept, in bytes (browsers send about 120 to 200).
pub const MAX_USER_AGENT_BYTES: usize = 512;
/// Longest `protocolVersion` kept, in bytes (revisions are dates, `2025-11-25`).
pub const MAX_VERSION_BYTES: usize = 32;

/// The request's correlation fields, as the record carries them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Correlation {
    pub session_id: Option<String>,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub span_id: Option<String>,
    pub source_address: Option<String>,
    pub user_agent: Option<String>,
    pub protocol_version: Option<String>,
}

impl Correlation {
    /// Picks the correlation headers out of a request's headers (any case, the first value of
    /// each), with the `MCP-Protocol-Version` the filter checked against the body.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
        protocol_version: Option<&str>,
    ) -> Correlation {
        let (mut session, mut request, mut traceparent, mut agent) = (None, None, None, None);
        for (name, value) in pairs {
            let slot = if name.eq_ignore_ascii_case("mcp-session-id") {
                &mut session
            } else if name.eq_ignore_ascii_case("x-request-id") {
                &mut request
            } else if name.eq_ignore_ascii_case("traceparent") {
                &mut traceparent
            } else if name.eq_ignore_ascii_case("user-agent") {
                &mut agent
            } else {
                continue;
            };
            slot.get_or_insert(value);
        }
        let (trace_id, span_id) = traceparent.and_then(parse_traceparent).unzip();
        Correlation {
            session_id: session.and_then(|v| bounded(v, MAX_ID_BYTES)),
            request_id: request.and_then(|v| bounded(v, MAX_ID_BYTES)),
            trace_id,
            span_id,
            source_address: None,
            user_agent: agent.and_then(|v| bounded(v, MAX_USER_AGENT_BYTES)),
            protocol_version: protocol_version.and_then(|v| bounded(v, MAX_VERSION_BYTES)),
        }
    }

    /// Sets `sourceAddress` from Envoy's `source.address` property (`None` when unset).
    pub fn set_source_address(&mut self, property: Option<&[u8]>) {
        self.source_address =
            property.and_then(|bytes| bounded(&String::from_utf8_lossy(bytes), MAX_ID_BYTES));
    }
}

/// `value` with every control character (C0, DEL, C1) replaced by U+FFFD and cut to at most
/// `max` bytes on a character boundary; `None` when empty.
pub fn bounded(value: &str, max: usize) -> Option<String> {
    if value.len() <= max && value.bytes().all(|b| matches!(b, b' '..=b'~')) {
        // Printable ASCII within the limit (ids, addresses, most user agents): kept as is.
        return (!value.is_empty()).then(|| value.to_string());
    }
    let mut out = String::with_capacity(value.len().min(max));
    for c in value.chars() {
        let c = if c.is_control() { '\u{FFFD}' } else { c };
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    (!out.is_empty()).then_some(out)
}

/// The trace id and parent id of a W3C Trace Context `traceparent` header
/// (`version-traceid-parentid-flags`, lowercase hex); `None` when it is not valid by the
/// spec: version `ff`, a wrong length, uppercase or non-hex digits, an all-zero id. A version
/// above `00` may carry more fields after a `-`, which are ignored.
pub fn parse_traceparent(value: &str) -> Option<(String, String)> {
    let b = value.as_bytes();
    let hex = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|s| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
    };
    let well_formed = hex(0..2)
        && b.get(2) == Some(&b'-')
        && hex(3..35)
        && b.get(35) == Some(&b'-')
        && hex(36..52)
        && b.get(52) == Some(&b'-')
        && hex(53..55);
    if !well_formed {
        return None;
    }
    let version_ok = match &value[..2] {
        "ff" => false,
        "00" => b.len() == 55,
        _ => b.len() == 55 || b.get(55) == Some(&b'-'),
    };
    let (trace, parent) = (&value[3..35], &value[36..52]);
    let zero = |id: &str| id.bytes().all(|c| c == b'0');
    (version_ok && !zero(trace) && !zero(parent)).then(|| (trace.to_string(), parent.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn picks_the_first_value_of_each_header_in_any_case() {
        let c = Correlation::from_pairs(
            [
                (":path", "/mcp"),
                ("Mcp-Session-Id", "s-1"),
                ("X-Request-Id", "r-1"),
                ("x-request-id", "r-2"),
                ("TraceParent", &format!("00-{TRACE}-{SPAN}-01")),
                ("user-agent", "python-httpx/0.28.1"),
            ],
            Some("2025-06-18"),
        );
        assert_eq!(
            c,
            Correlation {
                session_id: Some("s-1".into()),
                request_id: Some("r-1".into()),
                trace_id: Some(TRACE.into()),
                span_id: Some(SPAN.into()),
                source_address: None,
                user_agent: Some("python-httpx/0.28.1".into()),
                protocol_version: Some("2025-06-18".into()),
            }
        );
        assert_eq!(
            Correlation::from_pairs([("accept", "*/*")], None),
            Correlation::default()
        );
    }

    #[test]
    fn values_are_bounded_on_a_character_boundary_with_control_characters_replaced() {
        assert_eq!(bounded("abc", 3).as_deref(), Some("abc"));
        assert_eq!(bounded("abcd", 3).as_deref(), Some("abc"));
        assert_eq!(bounded("aé", 2).as_deref(), Some("a"), "é is two bytes");
        assert_eq!(
            bounded("a\tb\x7fc\u{85}", 64).as_deref(),
            Some("a\u{FFFD}b\u{FFFD}c\u{FFFD}")
        );
        assert_eq!(
            bounded("a\nb", 3).as_deref(),
            Some("a"),
            "U+FFFD is three bytes"
        );
        assert_eq!(bounded("", 8), None);
        let agent = "Mozilla/5.0 ".repeat(100);
        let c = Correlation::from_pairs([("user-agent", agent.as_str())], None);
        assert_eq!(
            c.user_agent.as_deref(),
            Some(&agent[..MAX_USER_AGENT_BYTES])
        );
        let id = "é".repeat(MAX_ID_BYTES);
        let c = Correlation::from_pairs([("x-request-id", id.as_str())], None);
        assert_eq!(
            c.request_id.map(|v| v.chars().count()),
            Some(MAX_ID_BYTES / 2)
        );
    }

    #[test]
    fn the_source_address_is_envoys_property_as_text() {
        let mut c = Correlation::default();
        c.set_source_address(Some(b"127.0.0.1:43210"));
        assert_eq!(c.source_address.as_deref(), Some("127.0.0.1:43210"));
        c.set_source_address(Some(b"[::1]:0\xff"));
        assert_eq!(c.source_address.as_deref(), Some("[::1]:0\u{FFFD}"));
        c.set_source_address(None);
        assert_eq!(c.source_address, None);
    }

    #[test]
    fn a_valid_traceparent_gives_its_trace_and_parent_ids() {
        let ids = Some((TRACE.to_string(), SPAN.to_string()));
        assert_eq!(parse_traceparent(&format!("00-{TRACE}-{SPAN}-01")), ids);
        assert_eq!(parse_traceparent(&format!("00-{TRACE}-{SPAN}-00")), ids);
        // A later version may append fields; its first four are read as version 00's.
        assert_eq!(parse_traceparent(&format!("cc-{TRACE}-{SPAN}-01")), ids);
        assert_eq!(
            parse_traceparent(&format!("cc-{TRACE}-{SPAN}-01-what")),
            ids
        );
    }

    #[test]
    fn an_invalid_traceparent_gives_nothing() {
        let zeros32 = "0".repeat(32);
        for bad in [
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-01-extra"),
            format!("cc-{TRACE}-{SPAN}-01extra"),
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            format!("00-{zeros32}-{SPAN}-01"),
            format!("00-{TRACE}-0000000000000000-01"),
            format!("00-{TRACE}-{SPAN}-0"),
            format!("00-{TRACE}-{SPAN}-0g"),
            format!("00_{TRACE}-{SPAN}-01"),
            format!("0-{TRACE}-{SPAN}-01"),
            format!("00-{}-{SPAN}-01", &TRACE[1..]),
            format!(" 00-{TRACE}-{SPAN}-01"),
            "00-é".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_traceparent(&bad), None, "{bad:?}");
        }
        let c = Correlation::from_pairs([("traceparent", "00-nonsense")], None);
        assert_eq!((c.trace_id, c.span_id), (None, None));
    }
}
