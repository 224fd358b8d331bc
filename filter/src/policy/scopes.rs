//! Tool authorization: which scopes each tool requires, by exact name or `*` glob, and the
//! scope check itself.

use std::collections::BTreeMap;

#[derive(Debug)]
pub struct ToolPolicy {
    exact: BTreeMap<String, Vec<String>>,
    /// Glob patterns, most specific (longest) first.
    globs: Vec<(String, Vec<String>)>,
    /// Scopes required by tools no entry names; `None` denies such tools.
    default_scopes: Option<Vec<String>>,
}

/// The scope decision for one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeCheck {
    Pass {
        required: Vec<String>,
    },
    Missing {
        required: Vec<String>,
        missing: Vec<String>,
    },
    UnknownTool,
}

impl ToolPolicy {
    pub fn new(
        tools: BTreeMap<String, Vec<String>>,
        default_scopes: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let mut exact = BTreeMap::new();
        let mut globs = Vec::new();
        for (pattern, scopes) in tools {
            if pattern.is_empty() || pattern.contains("**") {
                return Err(format!("`{pattern}` is not a tool name or a `*` glob"));
            }
            if scopes
                .iter()
                .any(|s| s.trim().is_empty() || s.contains(' '))
            {
                return Err(format!(
                    "`{pattern}`: scopes must be non-empty and contain no spaces"
                ));
            }
            if pattern.contains('*') {
                globs.push((pattern, scopes));
            } else {
                exact.insert(pattern, scopes);
            }
        }
        globs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Ok(ToolPolicy {
            exact,
            globs,
            default_scopes,
        })
    }

    /// The scopes `tool` requires: the exact entry, else the longest matching glob, else the
    /// default; `None` when the tool is unknown and unknown tools are denied.
    pub fn required_scopes(&self, tool: &str) -> Option<&[String]> {
        if let Some(scopes) = self.exact.get(tool) {
            return Some(scopes);
        }
        self.globs
            .iter()
            .find(|(pattern, _)| glob_match(pattern, tool))
            .map(|(_, scopes)| scopes.as_slice())
            .or(self.default_scopes.as_deref())
    }

    pub fn check(&self, tool: &str, granted: &[String]) -> ScopeCheck {
        let Some(required) = self.required_scopes(tool) else {
            return ScopeCheck::UnknownTool;
        };
        let missing: Vec<String> = required
            .iter()
            .filter(|s| !granted.contains(s))
            .cloned()
            .collect();
        let required = required.to_vec();
        if missing.is_empty() {
            ScopeCheck::Pass { required }
        } else {
            ScopeCheck::Missing { required, missing }
        }
    }
}

/// `*` matches any run of characters (including none); everything else matches itself.
fn glob_match(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let mut parts: Vec<&str> = parts.collect();
    let Some(last) = parts.pop() else {
        return rest.is_empty();
    };
    for part in parts {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(default: Option<Vec<String>>) -> ToolPolicy {
        let tools = [
            ("salesforce.query", vec!["salesforce:read"]),
            ("salesforce.*", vec!["salesforce:write"]),
            ("*", vec!["catch-all"]),
            ("github.*.create", vec!["github:write"]),
            ("public.ping", vec![]),
        ];
        let tools = tools
            .into_iter()
            .map(|(t, s)| (t.to_string(), s.into_iter().map(String::from).collect()))
            .collect();
        ToolPolicy::new(tools, default).unwrap()
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn exact_beats_longest_glob() {
        let p = policy(None);
        assert_eq!(
            p.required_scopes("salesforce.query").unwrap(),
            s(&["salesforce:read"])
        );
        assert_eq!(
            p.required_scopes("salesforce.update").unwrap(),
            s(&["salesforce:write"])
        );
        assert_eq!(
            p.required_scopes("github.repo.create").unwrap(),
            s(&["github:write"])
        );
        assert_eq!(p.required_scopes("anything").unwrap(), s(&["catch-all"]));
    }

    #[test]
    fn checks_scopes_and_unknown_tools() {
        let mut tools = BTreeMap::new();
        tools.insert(
            "salesforce.query".to_string(),
            s(&["salesforce:read", "crm"]),
        );
        let p = ToolPolicy::new(tools.clone(), None).unwrap();
        assert_eq!(
            p.check("salesforce.query", &s(&["crm"])),
            ScopeCheck::Missing {
                required: s(&["salesforce:read", "crm"]),
                missing: s(&["salesforce:read"])
            }
        );
        assert_eq!(
            p.check("salesforce.query", &s(&["crm", "salesforce:read", "x"])),
            ScopeCheck::Pass {
                required: s(&["salesforce:read", "crm"])
            }
        );
        assert_eq!(p.check("files.read", &s(&["crm"])), ScopeCheck::UnknownTool);
        let open = ToolPolicy::new(tools, Some(s(&["mcp:use"]))).unwrap();
        assert_eq!(
            open.check("files.read", &s(&["mcp:use"])),
            ScopeCheck::Pass {
                required: s(&["mcp:use"])
            }
        );
        assert_eq!(
            policy(None).check("public.ping", &[]),
            ScopeCheck::Pass { required: vec![] }
        );
    }

    #[test]
    fn glob_matching() {
        assert!(glob_match("a.*", "a.b"));
        assert!(glob_match("a.*", "a."));
        assert!(!glob_match("a.*", "ab"));
        assert!(glob_match("*.read", "files.read"));
        assert!(glob_match("a*b*c", "aXbYc"));
        assert!(!glob_match("a*b*c", "aXcYb"));
        assert!(!glob_match("ab*ba", "aba"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn bad_patterns_and_scopes_are_refused() {
        let bad = |t: &str, sc: &[&str]| ToolPolicy::new([(t.to_string(), s(sc))].into(), None);
        assert!(bad("", &[]).is_err());
        assert!(bad("a**", &[]).is_err());
        assert!(bad("a", &["two words"]).is_err());
        assert!(bad("a", &[""]).is_err());
    }
}
