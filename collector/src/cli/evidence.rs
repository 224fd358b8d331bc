//! `acp-collector evidence`.

use std::path::Path;

use crate::cli::EvidenceArgs;
use crate::evidence::{build, parse};
use crate::ledger::signing::SigningKey;
use crate::store::Store;

/// `acp-collector evidence`: writes the bundle to `--out`.
pub fn run(db: &Store, key: &Path, log_name: &str, args: &EvidenceArgs) -> anyhow::Result<()> {
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
