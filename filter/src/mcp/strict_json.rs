//! JSON parsing that refuses ambiguity: an object naming the same key twice is an error, not
//! "the last one wins". Parsers disagree on which duplicate wins (first, last, or an error), so
//! a body the filter reads one way could reach the MCP server, or a token's claims the
//! application, read the other way. Nesting depth stays bounded by serde_json's recursion limit
//! (128), so deeply nested input is a clean error, never a stack overflow.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StrictError {
    /// Not JSON (syntax, invalid UTF-8, nesting deeper than 128, trailing bytes).
    NotJson,
    /// Valid JSON with a key that appears twice in one object.
    DuplicateKey(String),
}

/// Parses `bytes` as JSON, refusing duplicate object keys at any depth.
pub fn parse(bytes: &[u8]) -> Result<Value, StrictError> {
    let duplicate = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = StrictValue(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (parsed, duplicate.take()) {
        (_, Some(key)) => Err(StrictError::DuplicateKey(key)),
        (Ok(value), None) => Ok(value),
        (Err(_), None) => Err(StrictError::NotJson),
    }
}

/// The seed that builds a [`Value`]; the first duplicate key found is left in the cell.
struct StrictValue<'a>(&'a Cell<Option<String>>);

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(item) = seq.next_element_seed(StrictValue(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                self.0.set(Some(key));
                return Err(A::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(StrictValue(self.0))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_like_serde_json() {
        let text = r#"{"a":[1,-2,3.5,"x\u0031",true,null,{"b":{}}],"c":18446744073709551615}"#;
        assert_eq!(
            parse(text.as_bytes()),
            Ok(serde_json::from_str::<Value>(text).unwrap())
        );
        assert_eq!(parse(b" 7 "), Ok(json!(7)));
    }

    #[test]
    fn duplicate_keys_at_any_depth_are_refused() {
        assert_eq!(
            parse(br#"{"name":"a","name":"b"}"#),
            Err(StrictError::DuplicateKey("name".into()))
        );
        assert_eq!(
            parse(br#"[{"p":{"q":1,"\u0071":2}}]"#),
            Err(StrictError::DuplicateKey("q".into())),
            "escapes decode to the same key"
        );
        assert!(
            parse(br#"{"a":{"x":1},"b":{"x":1}}"#).is_ok(),
            "same key in different objects"
        );
    }

    #[test]
    fn hostile_documents_are_not_json() {
        let deep = "[".repeat(100_000);
        assert_eq!(parse(deep.as_bytes()), Err(StrictError::NotJson));
        let nested_objects = r#"{"a":"#.repeat(200) + "1" + &"}".repeat(200);
        assert_eq!(parse(nested_objects.as_bytes()), Err(StrictError::NotJson));
        assert_eq!(parse(b"\"\xff\xfe\""), Err(StrictError::NotJson));
        assert_eq!(parse(b"{} {}"), Err(StrictError::NotJson));
        assert_eq!(parse(b""), Err(StrictError::NotJson));
    }
}
