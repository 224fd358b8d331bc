//! What every handler shares.

use std::sync::Arc;

use crate::apikeys::IngestToken;
use crate::ledger::writer::Writer;
use crate::policies;
use crate::store::Store;
use crate::webhooks;

#[derive(Clone)]
pub struct AppState {
    /// The store; export requests take their own read connections from it.
    pub db: Store,
    pub writer: Writer,
    pub ingest_token: Arc<IngestToken>,
    pub signer: Arc<policies::Signer>,
    pub webhooks: webhooks::Settings,
}
