//! What is wrong with the plugin configuration. Every domain validates its own section and
//! reports here; the text names the offending field (`identity.jwks.remote.cluster: missing
//! field ...`), as operators and the end-to-end tests read it.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// The document is not JSON of the expected shape, at its root.
    Document(String),
    /// A field does not have the expected shape (unknown, missing, wrong type).
    Shape {
        path: String,
        message: String,
    },
    Empty {
        field: String,
    },
    TooSmall {
        field: String,
        min: u64,
        value: u64,
    },
    Invalid {
        field: String,
        reason: String,
    },
    /// An action that would weaken a platform rule (`IMMUTABLE_INPUT_BLOCKS`).
    WeakensPlatformRule {
        detector: &'static str,
        action: &'static str,
        what: &'static str,
    },
}

impl ConfigError {
    pub fn invalid(field: impl Into<String>, reason: impl fmt::Display) -> ConfigError {
        ConfigError::Invalid {
            field: field.into(),
            reason: reason.to_string(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Document(message) => f.write_str(message),
            ConfigError::Shape { path, message } => write!(f, "{path}: {message}"),
            ConfigError::Empty { field } => write!(f, "{field}: must not be empty"),
            ConfigError::TooSmall { field, min, value } => {
                write!(f, "{field}: must be at least {min}, got {value}")
            }
            ConfigError::Invalid { field, reason } => write!(f, "{field}: {reason}"),
            ConfigError::WeakensPlatformRule {
                detector,
                action,
                what,
            } => write!(
                f,
                "scanning.input.{detector}: `{action}` refused: blocking {what} in tool inputs is a \
                 platform-enforced rule that no configuration can weaken (see IMMUTABLE_RULES.md)"
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

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
