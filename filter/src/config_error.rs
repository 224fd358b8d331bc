//! What is wrong with the plugin configuration. Every domain validates its own section and
//! reports here; the text names the offending field (`identity.jwks.remote.cluster: missing
//! field ...`), as operators and the end-to-end tests read it.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The document is not JSON of the expected shape, at its root.
    #[error("{0}")]
    Document(String),
    /// A field does not have the expected shape (unknown, missing, wrong type).
    #[error("{path}: {message}")]
    Shape { path: String, message: String },
    #[error("{field}: must not be empty")]
    Empty { field: String },
    #[error("{field}: must be at least {min}, got {value}")]
    TooSmall { field: String, min: u64, value: u64 },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// An action that would weaken a platform rule (`IMMUTABLE_INPUT_BLOCKS`).
    #[error(
        "scanning.input.{detector}: `{action}` refused: blocking {what} in tool inputs is a \
         platform-enforced rule that no configuration can weaken (see IMMUTABLE_RULES.md)"
    )]
    WeakensPlatformRule {
        detector: &'static str,
        action: &'static str,
        what: &'static str,
    },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, reason: impl std::fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

/// `value` must not be empty or blank.
pub fn non_empty(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::Empty {
            field: field.to_string(),
        });
    }
    Ok(())
}

/// `value` must be at least `min`.
pub fn at_least(field: &str, value: u64, min: u64) -> Result<(), ConfigError> {
    if value < min {
        return Err(ConfigError::TooSmall {
            field: field.to_string(),
            min,
            value,
        });
    }
    Ok(())
}

/// `value` must not exceed `limit`, the value of the field `limit_field`.
pub fn not_above(
    field: &str,
    value: u64,
    limit_field: &str,
    limit: u64,
) -> Result<(), ConfigError> {
    if value > limit {
        return Err(ConfigError::invalid(
            field,
            format!("must not exceed {limit_field} ({limit}), got {value}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_error_names_its_field_as_before() {
        let cases = [
            (
                ConfigError::Document("expected value at line 1 column 1".into()),
                "expected value at line 1 column 1",
            ),
            (
                ConfigError::Shape {
                    path: "identity.jwks.remote".into(),
                    message: "missing field `cluster`".into(),
                },
                "identity.jwks.remote: missing field `cluster`",
            ),
            (
                ConfigError::Empty {
                    field: "tenant".into(),
                },
                "tenant: must not be empty",
            ),
            (
                ConfigError::TooSmall {
                    field: "audit.batchSize".into(),
                    min: 1,
                    value: 0,
                },
                "audit.batchSize: must be at least 1, got 0",
            ),
            (ConfigError::invalid("tools", "bad glob"), "tools: bad glob"),
            (
                ConfigError::WeakensPlatformRule {
                    detector: "ssn",
                    action: "log",
                    what: "US Social Security numbers",
                },
                "scanning.input.ssn: `log` refused: blocking US Social Security numbers in tool \
                 inputs is a platform-enforced rule that no configuration can weaken (see \
                 IMMUTABLE_RULES.md)",
            ),
        ];
        for (error, text) in cases {
            assert_eq!(error.to_string(), text);
        }
    }
}
