//! A request's or answer's headers as one list, read from Envoy in a single host call. Each
//! value the host returns costs a call back into the VM to allocate it (about 5 us in Envoy's
//! V8), so a callback reads its header map once and looks names up here.

#[derive(Debug, Default)]
pub struct Headers(Vec<(String, String)>);

impl Headers {
    pub fn new(pairs: Vec<(String, String)>) -> Headers {
        Headers(pairs)
    }

    /// The first value of `name`, as Envoy's own lookup gives it (names compared in any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header in order, duplicates kept.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_a_name_in_any_case() {
        let headers = Headers::new(vec![
            ("authorization".into(), "Bearer a".into()),
            ("Mcp-Method".into(), "tools/call".into()),
            ("authorization".into(), "Bearer b".into()),
        ]);
        assert_eq!(headers.get("authorization"), Some("Bearer a"));
        assert_eq!(headers.get("mcp-method"), Some("tools/call"));
        assert_eq!(headers.get("content-encoding"), None);
        assert_eq!(headers.pairs().count(), 3);
    }
}
