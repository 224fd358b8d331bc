//! `GET /{tenant}/api/v1/audit`: the export API for auditors ([`crate::export`]).

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;

use crate::export::{page, stream, ExportQuery};
use crate::http::auth::TenantKey;
use crate::http::error::ApiError;
use crate::http::state::AppState;
use crate::store::Access;

pub async fn export(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    _: TenantKey,
    uri: Uri,
) -> Result<Response, ApiError> {
    let query = ExportQuery::parse(uri.query());
    let mut query = query?;
    query.filter.tenant = tenant;

    let format = query.format;
    let mut response = if query.streams() {
        // The producer takes its connection and keeps it on its blocking thread; the answer
        // starts once it has one (a 500 otherwise).
        let (chunks, body) = mpsc::channel(2);
        let (ready, connected) = oneshot::channel();
        let db = state.db.clone();
        tokio::task::spawn_blocking(move || match db.read() {
            Ok(conn) => {
                if ready.send(Ok(())).is_ok() {
                    stream(&*conn, &query, &chunks);
                }
            }
            Err(err) => {
                let _ = ready.send(Err(err));
            }
        });
        connected.await.map_err(anyhow::Error::from)??;
        Response::new(Body::from_stream(ReceiverStream::new(body)))
    } else {
        let path = uri.path().to_owned();
        let (body, next) = state
            .db
            .blocking(Access::Read, move |conn| -> Result<_, ApiError> {
                Ok(page(conn, &query, &path)?)
            })
            .await?;
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
