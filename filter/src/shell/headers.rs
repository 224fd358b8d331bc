//! A request's or answer's headers as one list, read from Envoy in a single host call. Each
//! value the host returns costs a call back into the VM to allocate it (about 5 us in Envoy's
//! V8), so a callback reads its header map once and looks names up here.
//!
//! The map arrives serialized as the proxy-wasm ABI defines it: the number of headers, the
//! length of each name and value (little-endian u32s), then each name and value followed by a
//! NUL. It is kept as that one buffer, its text indexed in place. The SDK's own reader copies
//! every name and value into an allocation of its own (and panics on a name that is not UTF-8):
//! two allocations per header on every call were a visible share of the filter's time.

use std::ops::Range;

#[derive(Debug, Default)]
pub struct Headers {
    /// The names and values, as the host wrote them (each followed by a NUL), after the NULs
    /// that stand where the map's sizes were.
    text: String,
    /// Of each header in order, where its name and its value are in `text`.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl Headers {
    /// The headers of a serialized map; bytes that are not UTF-8 become U+FFFD (no token,
    /// method or tool name contains it). A map cut short keeps the headers it holds whole.
    pub fn from_map_bytes(mut bytes: Vec<u8>) -> Headers {
        let Some(sizes) = map_sizes(&bytes) else {
            return Headers::default();
        };
        let data = 4 + 8 * sizes.len();
        let fields = sizes
            .iter()
            .fold(0usize, |sum, &(n, v)| sum.saturating_add(n + v + 2));
        if bytes.len().saturating_sub(data) >= fields {
            // The common case: the text is used where it lies, past the sizes, which are
            // overwritten with NULs (so the buffer is UTF-8) rather than moved out of its way.
            if let Some(prefix) = bytes.get_mut(..data) {
                prefix.fill(0);
            }
            match String::from_utf8(bytes) {
                Ok(text) => {
                    let mut spans = Vec::with_capacity(sizes.len());
                    let mut at = data;
                    for (name, value) in sizes {
                        let value_at = at + name + 1;
                        spans.push((at..at + name, value_at..value_at + value));
                        at = value_at + value + 1;
                    }
                    return Headers { text, spans };
                }
                Err(not_utf8) => bytes = not_utf8.into_bytes(),
            }
        }
        let mut headers = Headers::default();
        let mut at = data;
        for (name, value) in sizes {
            let value_at = at + name + 1;
            let (Some(n), Some(v)) = (
                bytes.get(at..at + name),
                bytes.get(value_at..value_at + value),
            ) else {
                break;
            };
            headers.push(&String::from_utf8_lossy(n), &String::from_utf8_lossy(v));
            at = value_at + value + 1;
        }
        headers
    }

    fn push(&mut self, name: &str, value: &str) {
        let at = self.text.len();
        self.text.push_str(name);
        self.text.push('\0');
        self.text.push_str(value);
        self.text.push('\0');
        let value_at = at + name.len() + 1;
        self.spans
            .push((at..at + name.len(), value_at..value_at + value.len()));
    }

    /// The first value of `name`, as Envoy's own lookup gives it (names compared in any case).
    pub fn get(&self, name: &str) -> Option<&str> {
        let bytes = self.text.as_bytes();
        let (_, value) = self.spans.iter().find(|(n, _)| {
            bytes
                .get(n.clone())
                .is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes()))
        })?;
        self.text.get(value.clone())
    }

    /// Every header in order, duplicates kept.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.spans.iter().map(|(name, value)| {
            (
                self.text.get(name.clone()).unwrap_or_default(),
                self.text.get(value.clone()).unwrap_or_default(),
            )
        })
    }
}

/// The (name, value) lengths a serialized map announces; `None` when its size fields do not
/// fit in it (an empty map is no bytes at all).
fn map_sizes(bytes: &[u8]) -> Option<Vec<(usize, usize)>> {
    let word = |at: usize| {
        bytes
            .get(at..at.checked_add(4)?)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| u32::from_le_bytes(b) as usize)
    };
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let count = word(0)?;
    if count > bytes.len() / 8 {
        return None;
    }
    // No name or value is longer than the map: the sums below cannot overflow.
    let size = |at: usize| word(at).filter(|&n| n <= bytes.len());
    (0..count)
        .map(|i| Some((size(4 + 8 * i)?, size(8 + 8 * i)?)))
        .collect()
}

/// `pairs` serialized as a host writes a header map.
#[cfg(test)]
pub fn map_bytes(pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = (pairs.len() as u32).to_le_bytes().to_vec();
    for (name, value) in pairs {
        out.extend((name.len() as u32).to_le_bytes());
        out.extend((value.len() as u32).to_le_bytes());
    }
    for (name, value) in pairs {
        out.extend(*name);
        out.push(0);
        out.extend(*value);
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_value_of_a_name_in_any_case() {
        let headers = Headers::from_map_bytes(map_bytes(&[
            (b"authorization", b"Bearer a"),
            (b"Mcp-Method", b"tools/call"),
            (b"authorization", b"Bearer b"),
        ]));
        assert_eq!(headers.get("authorization"), Some("Bearer a"));
        assert_eq!(headers.get("mcp-method"), Some("tools/call"));
        assert_eq!(headers.get("content-encoding"), None);
        assert_eq!(headers.pairs().count(), 3);
    }

    #[test]
    fn a_serialized_map_is_read_in_place_with_empty_and_unicode_values() {
        let bytes = map_bytes(&[
            (b":path", b"/mcp"),
            (b"x-empty", b""),
            (b"x-name", "J\u{f6}rg \u{1F600}".as_bytes()),
        ]);
        let headers = Headers::from_map_bytes(bytes);
        let pairs: Vec<_> = headers.pairs().collect();
        assert_eq!(
            pairs,
            [
                (":path", "/mcp"),
                ("x-empty", ""),
                ("x-name", "J\u{f6}rg \u{1F600}")
            ]
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_become_replacement_characters() {
        let bytes = map_bytes(&[(b"x-bin", b"a\xffb"), (b"n\xfe", b"v"), (b"ok", b"yes")]);
        let headers = Headers::from_map_bytes(bytes);
        let pairs: Vec<_> = headers.pairs().collect();
        assert_eq!(
            pairs,
            [("x-bin", "a\u{fffd}b"), ("n\u{fffd}", "v"), ("ok", "yes")]
        );
    }

    #[test]
    fn a_map_cut_short_keeps_the_whole_headers_and_never_panics() {
        let full = map_bytes(&[(b"a", b"1"), (b"bb", b"22")]);
        for cut in 0..full.len() {
            let headers = Headers::from_map_bytes(full[..cut].to_vec());
            let pairs: Vec<_> = headers.pairs().collect();
            // The sizes (20 bytes), then "a\01\0" and "bb\022\0": a header is kept once its
            // name and value are all there.
            let whole = [23, 29].iter().filter(|&&end| cut >= end).count();
            assert_eq!(pairs, [("a", "1"), ("bb", "22")][..whole], "cut at {cut}");
        }
        assert!(Headers::from_map_bytes(Vec::new()).pairs().next().is_none());
        // A count far beyond the bytes: no allocation of that size, no panic.
        let mut huge = u32::MAX.to_le_bytes().to_vec();
        huge.extend([1, 0, 0, 0, 1, 0, 0, 0]);
        assert!(Headers::from_map_bytes(huge).pairs().next().is_none());
    }
}
