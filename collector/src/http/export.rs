//! `GET /{tenant}/api/v1/audit`: the export API for auditors ([`crate::export`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::apikeys;
use crate::export::{page, stream, ExportQuery};
use crate::http::auth::bearer;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::Conn;

/// A read connection for a request on `tenant`'s records.
pub type ReadConn = Box<dyn Conn + Send>;

/// A read connection for a request on `tenant`'s records, once the request's API key has been
/// checked against that tenant.
pub async fn tenant_connection(
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
) -> Result<ReadConn, ApiError> {
    let key = bearer(headers)
        .ok_or_else(ApiError::unauthorized)?
        .to_owned();
    let db = state.db.clone();
    let path_tenant = tenant.to_owned();
    tokio::task::spawn_blocking(move || -> Result<ReadConn, ApiError> {
        let conn = db.read()?;
        match apikeys::tenant_of(&*conn, &key)? {
            None => Err(ApiError::unauthorized()),
            Some(owner) if owner != path_tenant => {
                tracing::warn!(
                    tenant = path_tenant,
                    owner,
                    "export refused: key of another tenant"
                );
                Err(ApiError::forbidden(
                    "this API key is not valid for this tenant",
                ))
            }
            Some(_) => Ok(conn),
        }
    })
    .await?
}

pub async fn export(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let query = ExportQuery::parse(uri.query());
    let conn = tenant_connection(&state, &tenant, &headers).await?;
    let mut query = query.map_err(|e| ApiError::bad_request(e.to_string()))?;
    query.filter.tenant = tenant;

    let format = query.format;
    let mut response = if query.streams() {
        let (chunks, body) = mpsc::channel(2);
        tokio::task::spawn_blocking(move || stream(&*conn, &query, &chunks));
        Response::new(Body::from_stream(ReceiverStream::new(body)))
    } else {
        let path = uri.path().to_owned();
        let (body, next) =
            tokio::task::spawn_blocking(move || page(&*conn, &query, &path)).await??;
        let mut response = body.into_response();
        if let Some(next) = next {
            let link = HeaderValue::try_from(format!("<{next}>; rel=\"next\""))?;
            response.headers_mut().insert(header::LINK, link);
        }
        response
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    Ok(response)
}
