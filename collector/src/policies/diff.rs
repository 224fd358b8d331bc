//! The difference between two policy documents as a list of changed leaves.

use serde::Serialize;
use serde_json::Value;

/// One changed value: its dotted path (array items by index, `tools.a\.b` keeps a dotted key
/// readable as `tools["a.b"]`), and the value before and after (`null` when absent).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub path: String,
    pub before: Value,
    pub after: Value,
}

/// Every path whose value differs, in key order. Objects are compared key by key; any other
/// differing values (scalars, arrays, a type change) are one change at their path.
pub fn diff(before: &Value, after: &Value) -> Vec<Change> {
    let mut changes = Vec::new();
    walk("", before, after, &mut changes);
    changes
}

fn walk(path: &str, before: &Value, after: &Value, out: &mut Vec<Change>) {
    match (before, after) {
        (Value::Object(a), Value::Object(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = child_path(path, key);
                let (x, y) = (
                    a.get(key).unwrap_or(&Value::Null),
                    b.get(key).unwrap_or(&Value::Null),
                );
                walk(&child, x, y, out);
            }
        }
        (a, b) if a != b => out.push(Change {
            path: path.to_owned(),
            before: a.clone(),
            after: b.clone(),
        }),
        _ => {}
    }
}

fn child_path(parent: &str, key: &str) -> String {
    let key = if key.contains('.') {
        format!("[{key:?}]")
    } else {
        key.to_owned()
    };
    match (parent.is_empty(), key.starts_with('[')) {
        (true, _) => key,
        (false, true) => format!("{parent}{key}"),
        (false, false) => format!("{parent}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_exactly_the_changed_paths() {
        let a = json!({"tools": {"echo": ["a"], "db.query": ["r"]}, "rateLimits": null, "same": 1});
        let b = json!({"tools": {"echo": ["a", "b"], "new": ["x"]}, "rateLimits": {"burst": 5}, "same": 1});
        let changes = diff(&a, &b);
        let summary: Vec<(&str, &Value, &Value)> = changes
            .iter()
            .map(|c| (c.path.as_str(), &c.before, &c.after))
            .collect();
        assert_eq!(
            summary,
            [
                ("rateLimits", &json!(null), &json!({"burst": 5})),
                ("tools[\"db.query\"]", &json!(["r"]), &json!(null)),
                ("tools.echo", &json!(["a"]), &json!(["a", "b"])),
                ("tools.new", &json!(null), &json!(["x"])),
            ]
        );
        assert!(diff(&a, &a).is_empty());
    }
}
