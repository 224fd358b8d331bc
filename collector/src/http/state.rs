//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use crate::apikeys::IngestToken;
use crate::ledger::writer::Writer;
use crate::metrics::Metrics;
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
    pub metrics: Arc<Metrics>,
    /// The verifier key of the loaded signing key (loaded before the service starts).
    pub signing_key: Arc<str>,
    pub checkpoint_interval: Duration,
}
