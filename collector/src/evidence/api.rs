//! `acp-collector evidence` and `GET /{tenant}/api/v1/evidence?from=&to=[&seed=][&sample=]`
//! (tenant API key; answers the zip).

use std::path::Path;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::cli::EvidenceArgs;
use crate::error::ApiError;
use crate::export::{parse_time, tenant_connection};
use crate::ledger::signing::SigningKey;
use crate::server::AppState;
use crate::store::Database;

use super::{build, Request, DEFAULT_SAMPLE};

pub fn routes() -> Router<AppState> {
    Router::new().route("/{tenant}/api/v1/evidence", get(evidence))
}

/// Parses `from`, `to` (dates or RFC 3339 times, as in the export API), `seed` and `sample`.
pub fn parse(tenant: &str, params: &[(String, String)]) -> Result<Request, String> {
    let (mut from, mut to, mut seed, mut sample) = (None, None, None, DEFAULT_SAMPLE);
    for (name, value) in params {
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("invalid parameter `{name}`: expected a non-negative integer"))
        };
        match name.as_str() {
            "from" => from = Some(parse_time(name, value, false).map_err(|e| e.to_string())?),
            "to" => to = Some(parse_time(name, value, true).map_err(|e| e.to_string())?),
            "seed" => seed = Some(number()?),
            "sample" => sample = number()? as usize,
            other => {
                return Err(format!(
                    "invalid parameter `{other}`: unknown; expected from, to, seed, sample"
                ))
            }
        }
    }
    let (Some(from_ms), Some(to_ms)) = (from, to) else {
        return Err("`from` and `to` are required".into());
    };
    if to_ms <= from_ms {
        return Err("invalid parameter `to`: must be later than `from`".into());
    }
    Ok(Request {
        tenant: tenant.to_owned(),
        from_ms,
        to_ms,
        seed: seed.unwrap_or_else(rand::random),
        sample,
    })
}

async fn evidence(
    State(state): State<AppState>,
    UrlPath(tenant): UrlPath<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let conn = tenant_connection(&state, &tenant, &headers).await?;
    let request = parse(&tenant, &params).map_err(ApiError::bad_request)?;
    let signer = state.signer.clone();
    let zip =
        tokio::task::spawn_blocking(move || build(&*conn, &signer.key, &signer.log_name, &request))
            .await?
            .map_err(|e| ApiError::new(axum::http::StatusCode::CONFLICT, format!("{e:#}")))?;
    Ok(([(header::CONTENT_TYPE, "application/zip")], zip).into_response())
}

/// `acp-collector evidence`: writes the bundle to `--out`.
pub fn cli(db: &Database, key: &Path, log_name: &str, args: &EvidenceArgs) -> anyhow::Result<()> {
    let conn = db.read()?;
    let mut params = vec![
        ("from".to_owned(), args.from.clone()),
        ("to".to_owned(), args.to.clone()),
        ("sample".to_owned(), args.sample.to_string()),
    ];
    params.extend(args.seed.map(|s| ("seed".to_owned(), s.to_string())));
    let request = parse(&args.tenant, &params).map_err(anyhow::Error::msg)?;
    let key = SigningKey::load_or_create(key, log_name)?;
    let zip = build(&*conn, &key, log_name, &request)?;
    std::fs::write(&args.out, zip)?;
    println!(
        "{}: evidence of {} from {} to {} (sample seed {})",
        args.out.display(),
        args.tenant,
        args.from,
        args.to,
        request.seed
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn period_seed_and_sample_are_parsed_and_checked() {
        let r = parse(
            "org_a",
            &params(&[
                ("from", "2026-03-01"),
                ("to", "2026-03-01"),
                ("seed", "7"),
                ("sample", "3"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (r.to_ms - r.from_ms, r.seed, r.sample, r.tenant.as_str()),
            (86_400_000, 7, 3, "org_a")
        );
        let err = |p: &[(&str, &str)]| parse("org_a", &params(p)).err().unwrap();
        assert_eq!(
            err(&[("from", "2026-03-01")]),
            "`from` and `to` are required"
        );
        assert!(
            err(&[("from", "2026-03-02"), ("to", "2026-03-01T00:00:00Z")])
                .contains("must be later than `from`")
        );
        assert!(
            err(&[("from", "2026-03-01"), ("to", "2026-03-02"), ("seed", "-1")])
                .starts_with("invalid parameter `seed`")
        );
        assert!(err(&[("limit", "1")]).starts_with("invalid parameter `limit`: unknown"));
    }
}
