//! The error answer of every endpoint: a status and `{"error": "<message>"}`. Each domain
//! reports its own error type; the conversions below, and [`ApiError::status`], are the one
//! place where a failure gets its status code.

use axum::extract::rejection::BytesRejection;
use axum::http::header::InvalidHeaderValue;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::evidence::EvidenceError;
use crate::export::stats::StatsError;
use crate::export::ParamError;
use crate::ledger::proofs::ProofError;
use crate::ledger::writer::WriteError;
use crate::policies::PolicyError;
use crate::store::StoreError;
use crate::webhooks::WebhookError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401, with `WWW-Authenticate: Bearer`.
    #[error("missing, unknown or revoked bearer token")]
    Unauthorized,
    /// 403.
    #[error("{0}")]
    Forbidden(String),
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 410.
    #[error("{0}")]
    Gone(String),
    /// A request body axum could not take (too large, unreadable): its status and text.
    #[error("{text}")]
    Body { status: StatusCode, text: String },
    /// Anything unexpected (database, I/O): logged, and answered with a bare 500.
    #[error("internal error")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn unauthorized() -> Self {
        Self::Unauthorized
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    /// The status code of each kind of error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::Gone(_) => StatusCode::GONE,
            Self::Body { status, .. } => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        tracing::warn!(error = format!("{err:#}"), "request failed");
        Self::Internal(err)
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Store(err) => err.into(),
            StoreError::Task(err) => anyhow::Error::from(err).into(),
        }
    }
}

impl From<WriteError> for ApiError {
    fn from(err: WriteError) -> Self {
        anyhow::Error::from(err).into()
    }
}

impl From<serde_json::Error> for ApiError {
    fn from(err: serde_json::Error) -> Self {
        anyhow::Error::from(err).into()
    }
}

impl From<InvalidHeaderValue> for ApiError {
    fn from(err: InvalidHeaderValue) -> Self {
        anyhow::Error::from(err).into()
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        Self::Body {
            status: rejection.status(),
            text: rejection.body_text(),
        }
    }
}

impl From<ParamError> for ApiError {
    fn from(err: ParamError) -> Self {
        Self::BadRequest(err.to_string())
    }
}

impl From<StatsError> for ApiError {
    fn from(err: StatsError) -> Self {
        match err {
            StatsError::Param(err) => err.into(),
            StatsError::Store(err) => err.into(),
        }
    }
}

impl From<ProofError> for ApiError {
    fn from(err: ProofError) -> Self {
        match err {
            ProofError::NoCheckpoint => Self::NotFound(err.to_string()),
            ProofError::OutOfRange { .. } => Self::BadRequest(err.to_string()),
            ProofError::Expired { .. } => Self::Gone(err.to_string()),
            ProofError::Store(err) => err.into(),
        }
    }
}

impl From<PolicyError> for ApiError {
    fn from(err: PolicyError) -> Self {
        match err {
            PolicyError::Body(_) | PolicyError::Invalid(_) => Self::BadRequest(err.to_string()),
            PolicyError::NoVersion(_) => Self::NotFound(err.to_string()),
            PolicyError::Store(err) => err.into(),
        }
    }
}

impl From<EvidenceError> for ApiError {
    fn from(err: EvidenceError) -> Self {
        match err {
            EvidenceError::Request(message) => Self::BadRequest(message),
            EvidenceError::Build(err) => Self::Conflict(format!("{err:#}")),
        }
    }
}

impl From<WebhookError> for ApiError {
    fn from(err: WebhookError) -> Self {
        match err {
            WebhookError::Invalid(message) => Self::BadRequest(message),
            WebhookError::Conflict(err) => Self::Conflict(format!("{err:#}")),
            WebhookError::NotFound(_) => Self::NotFound(err.to_string()),
            WebhookError::Store(err) => err.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}
