//! At-least-once delivery. A poller looks every [`POLL`] at the enabled endpoints that are due,
//! reads each one's next events from every source from its durable cursors, and sends them as
//! one signed request. Only a 2xx answer moves the cursors (in one transaction), so events sent
//! to a receiver that is down, or lost in a crash or restart, are sent again: a receiver
//! de-duplicates by event id. Failures are retried after a growing, capped, jittered delay;
//! 410 Gone disables the endpoint. Each batch is planned again and sent under the endpoint's
//! [`Lease`], so replicas sharing a PostgreSQL database never send it at the same time.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::db::{self, Outcome, Webhook};
use super::events::{Event, Kind, SOURCES};
use super::lease::Lease;
use super::signature;
use super::ssrf::{AllowList, GuardedResolver};
use crate::metrics::{Delivery, Metrics};
use crate::store::{Conn, ConnExt, Store};

const POLL: Duration = Duration::from_millis(200);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Delays between failed attempts: `initial`, doubling up to `max`, each jittered to between
/// half and all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
}

impl RetryPolicy {
    /// The delay after the `failures`-th consecutive failure; `jitter` is uniform in [0, 1).
    pub fn delay(&self, failures: u32, jitter: f64) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32 << failures.saturating_sub(1).min(30));
        let full = doubled.min(self.max);
        full / 2 + full.mul_f64(jitter.clamp(0.0, 1.0) / 2.0)
    }
}

/// One delivery: the events and, per source, the cursor move it makes once delivered.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub events: Vec<Event>,
    /// `(source, from, to)` for every source whose cursor moves.
    pub moves: Vec<(&'static str, u64, u64)>,
}

/// What a source read from an endpoint's cursor.
pub struct Read {
    pub source: &'static str,
    pub cursor: u64,
    pub events: Vec<Event>,
}

/// Plans the next delivery: the subscribed events of every source merged by time (each
/// source's own order kept), at most `max`; a source's cursor moves past the events taken and
/// past the unsubscribed events before its first event left out.
pub fn plan(reads: Vec<Read>, subscribed: &BTreeSet<Kind>, max: usize) -> Plan {
    let mut queues: Vec<std::collections::VecDeque<&Event>> = reads
        .iter()
        .map(|r| {
            r.events
                .iter()
                .filter(|e| subscribed.contains(&e.kind))
                .collect()
        })
        .collect();
    let mut taken = vec![0usize; reads.len()];
    let mut events = Vec::new();
    while events.len() < max {
        let next = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.front().map(|e| (e.time_ms, i)))
            .min();
        let Some((_, i)) = next else { break };
        if let Some(event) = queues[i].pop_front() {
            events.push(event.clone());
            taken[i] += 1;
        }
    }
    let moves = reads
        .iter()
        .zip(&queues)
        .filter_map(|(read, left)| {
            let to = match left.front() {
                Some(first_left) => first_left.key,
                None => read.events.last()?.key + 1,
            };
            (to != read.cursor).then_some((read.source, read.cursor, to))
        })
        .collect();
    Plan { events, moves }
}

/// The `webhook-id` of a delivery: the same for every attempt of the same events.
fn message_id(hook: &str, events: &[Event]) -> String {
    let mut hash = Sha256::new();
    hash.update(hook);
    for event in events {
        hash.update(b"\n");
        hash.update(&event.id);
    }
    let digest = hash.finalize();
    format!(
        "msg_{}",
        digest[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// The delivery settings of the service.
#[derive(Debug, Clone)]
pub struct Settings {
    pub allow: Arc<AllowList>,
    pub retry: RetryPolicy,
}

/// Starts the poller on `database`. Each of its blocking steps takes a connection of its own on
/// a blocking thread and drops it there. Each attempt's outcome is counted in `metrics`.
pub fn spawn(
    database: Store,
    settings: Settings,
    metrics: Arc<Metrics>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client = reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(settings.allow.clone())))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("acp-collector/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let poller = Poller {
        database,
        client,
        settings,
        metrics,
        in_flight: Arc::new(Mutex::new(HashSet::new())),
        waiting: HashMap::new(),
    };
    Ok(tokio::spawn(poller.run()))
}

struct Poller {
    database: Store,
    client: reqwest::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    in_flight: Arc<Mutex<HashSet<String>>>,
    /// Since when a partial batch of each endpoint has been waiting.
    waiting: HashMap<String, Instant>,
}

type Due = Vec<(Webhook, Plan)>;

impl Poller {
    async fn run(mut self) {
        let mut interval = tokio::time::interval(POLL);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            let database = self.database.clone();
            let busy: HashSet<String> = lock(&self.in_flight).clone();
            let polled = tokio::task::spawn_blocking(move || {
                let conn = database.write()?;
                plan_due(&database, &*conn, &busy)
            });
            match polled.await {
                Ok(Ok(due)) => self.start(due),
                Ok(Err(err)) => tracing::warn!(error = format!("{err:#}"), "webhook poll failed"),
                Err(err) => tracing::warn!(error = %err, "webhook poll failed"),
            }
        }
    }

    /// Sends each full batch, and each partial one that has waited long enough.
    fn start(&mut self, due: Due) {
        let now = Instant::now();
        for (hook, plan) in due {
            let full = plan.events.len() >= hook.spec.batch.max_events as usize;
            let since = *self.waiting.entry(hook.id.clone()).or_insert(now);
            let waited =
                now.duration_since(since) >= Duration::from_millis(hook.spec.batch.max_wait_ms);
            if !(full || waited) {
                continue;
            }
            self.waiting.remove(&hook.id);
            lock(&self.in_flight).insert(hook.id.clone());
            let (database, client, settings, metrics, in_flight) = (
                self.database.clone(),
                self.client.clone(),
                self.settings.clone(),
                self.metrics.clone(),
                self.in_flight.clone(),
            );
            let id = hook.id;
            tokio::spawn(async move {
                let delivered = deliver(database, client, settings, metrics, id.clone()).await;
                if let Err(error) = delivered {
                    tracing::warn!(webhook = id, error, "webhook delivery step failed");
                }
                lock(&in_flight).remove(&id);
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs `work` off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> Result<T, String> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{err:#}")),
        Err(err) => Err(err.to_string()),
    }
}

/// Delivers the next batch of endpoint `id` if this process gets its lease. The whole delivery
/// runs on a blocking thread, which keeps the connections (and the lease's) off the async
/// runtime; the request itself is driven from there on the runtime's handle.
async fn deliver(
    database: Store,
    client: reqwest::Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    id: String,
) -> Result<(), String> {
    let runtime = tokio::runtime::Handle::current();
    blocking(move || {
        let conn = database.write()?;
        let Some((lease, hook, plan)) = claim(&database, &*conn, &id)? else {
            return Ok(());
        };
        let outcome = runtime.block_on(send(&client, &settings, &hook, &plan));
        metrics.delivery(match outcome {
            Outcome::Delivered => Delivery::Delivered,
            Outcome::Failed { .. } => Delivery::Failed,
            Outcome::Disabled { .. } => Delivery::Disabled,
        });
        finish(lease.conn(&*conn), &hook, &plan, &outcome)
    })
    .await
}

/// Takes the lease of endpoint `id` and plans its batch again under it, as another replica may
/// have delivered it, or failed and postponed it, since it was planned. `None` when another
/// replica holds the lease or nothing is due any more.
fn claim(
    database: &Store,
    shared: &dyn Conn,
    id: &str,
) -> anyhow::Result<Option<(Lease, Webhook, Plan)>> {
    let Some(lease) = Lease::try_acquire(database, id)? else {
        tracing::debug!(webhook = id, "another replica is delivering");
        return Ok(None);
    };
    let conn = lease.conn(shared);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let Some(hook) = db::find(conn, id)?.filter(|h| h.enabled && h.next_attempt_ms <= now_ms)
    else {
        return Ok(None);
    };
    let plan = plan_of(conn, &hook)?;
    if plan.events.is_empty() {
        return Ok(None);
    }
    Ok(Some((lease, hook, plan)))
}

/// The next delivery of every due endpoint that is not sending; endpoints with only
/// unsubscribed events pending just move their cursors (under their lease).
fn plan_due(database: &Store, conn: &dyn Conn, busy: &HashSet<String>) -> anyhow::Result<Due> {
    let mut due = Vec::new();
    for hook in db::due(conn, chrono::Utc::now().timestamp_millis())? {
        if busy.contains(&hook.id) {
            continue;
        }
        let plan = plan_of(conn, &hook)?;
        if plan.events.is_empty() {
            if plan.moves.is_empty() {
                continue;
            }
            if let Some(lease) = Lease::try_acquire(database, &hook.id)? {
                let conn = lease.conn(conn);
                let plan = plan_of(conn, &hook)?;
                if plan.events.is_empty() {
                    apply_moves(conn, &hook.id, &plan)?;
                }
            }
        } else {
            due.push((hook, plan));
        }
    }
    Ok(due)
}

/// The next delivery of `hook` from its cursors.
fn plan_of(conn: &dyn Conn, hook: &Webhook) -> anyhow::Result<Plan> {
    let max = hook.spec.batch.max_events as usize;
    let mut reads = Vec::with_capacity(SOURCES.len());
    for source in SOURCES {
        let cursor = db::cursor(conn, &hook.id, source.name)?;
        let events = if source.kinds.iter().any(|k| hook.spec.events.contains(k)) {
            (source.read)(conn, &hook.tenant, cursor, max)?
        } else {
            Vec::new()
        };
        reads.push(Read {
            source: source.name,
            cursor,
            events,
        });
    }
    Ok(plan(reads, &hook.spec.events, max))
}

fn apply_moves(conn: &dyn Conn, id: &str, plan: &Plan) -> anyhow::Result<()> {
    conn.transaction(|tx| advance(tx, id, plan))
}

/// Makes the cursor moves of `plan` (in the caller's transaction).
fn advance(conn: &dyn Conn, id: &str, plan: &Plan) -> anyhow::Result<()> {
    for (source, from, to) in &plan.moves {
        db::advance(conn, id, source, *from, *to)?;
    }
    Ok(())
}

async fn send(
    client: &reqwest::Client,
    settings: &Settings,
    hook: &Webhook,
    plan: &Plan,
) -> Outcome {
    let now = chrono::Utc::now();
    let failed = |error: String| Outcome::Failed {
        retry_at_ms: (now
            + settings
                .retry
                .delay(hook.failures + 1, rand::random::<f64>()))
        .timestamp_millis(),
        error,
    };
    // A URL with an address for its host skips the resolver: check it here.
    if let Err(err) = settings.allow.check_url(&hook.spec.url) {
        return failed(err);
    }
    let body = match super::formats::body(hook.spec.format, &hook.tenant, &plan.events) {
        Ok(body) => body,
        Err(err) => return failed(format!("cannot encode the events: {err}")),
    };
    let id = message_id(&hook.id, &plan.events);
    let timestamp = now.timestamp();
    let signature = match signature::sign(&hook.secret, &id, timestamp, &body) {
        Ok(signature) => signature,
        Err(err) => return failed(format!("cannot sign: {err}")),
    };
    let mut request = client
        .post(&hook.spec.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature);
    if let Some(token) = &hook.spec.hec_token {
        request = request.header("authorization", format!("Splunk {token}"));
    }
    match request.body(body).send().await {
        Ok(response) if response.status().is_success() => Outcome::Delivered,
        Ok(response) if response.status() == reqwest::StatusCode::GONE => Outcome::Disabled {
            reason: format!(
                "the receiver answered 410 Gone at {}",
                acp_record::format_timestamp(now.timestamp_millis()).unwrap_or_default()
            ),
        },
        Ok(response) => failed(format!("the receiver answered {}", response.status())),
        Err(err) => failed(format!("{:#}", anyhow::Error::from(err))),
    }
}

fn finish(conn: &dyn Conn, hook: &Webhook, plan: &Plan, outcome: &Outcome) -> anyhow::Result<()> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    match outcome {
        Outcome::Delivered => {
            tracing::debug!(webhook = hook.id, events = plan.events.len(), "delivered")
        }
        Outcome::Failed { error, .. } => {
            tracing::warn!(
                webhook = hook.id,
                events = plan.events.len(),
                error,
                "webhook delivery failed"
            )
        }
        Outcome::Disabled { reason } => {
            tracing::warn!(webhook = hook.id, reason, "webhook disabled")
        }
    }
    conn.transaction(|tx| {
        if *outcome == Outcome::Delivered {
            advance(tx, &hook.id, plan)?;
        }
        db::record_attempt(tx, &hook.id, now_ms, outcome)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn event(key: u64, kind: Kind, time_ms: i64) -> Event {
        Event {
            key,
            id: format!("{kind:?}{key}"),
            kind,
            time_ms,
            seq: None,
            data: Value::Null,
        }
    }

    #[test]
    fn retry_delays_grow_to_the_cap_with_jitter() {
        let policy = RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
        };
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(500));
        assert_eq!(policy.delay(1, 0.5), Duration::from_millis(750));
        assert_eq!(policy.delay(2, 0.5), Duration::from_millis(1500));
        assert_eq!(policy.delay(3, 0.0), Duration::from_secs(2));
        assert_eq!(policy.delay(40, 0.0), Duration::from_secs(30));
        assert!(policy.delay(40, 0.99) < Duration::from_secs(60));
    }

    #[test]
    fn plans_merge_sources_by_time_and_skip_unsubscribed_events() {
        let subscribed: BTreeSet<Kind> = [Kind::ToolCall, Kind::AuditCheckpoint].into();
        let reads = || {
            vec![
                Read {
                    source: "records",
                    cursor: 10,
                    events: vec![
                        event(10, Kind::ToolCall, 100),
                        event(11, Kind::AuthFailed, 150),
                        event(12, Kind::ToolCall, 300),
                    ],
                },
                Read {
                    source: "checkpoints",
                    cursor: 5,
                    events: vec![event(12, Kind::AuditCheckpoint, 200)],
                },
            ]
        };
        let all = plan(reads(), &subscribed, 10);
        let ids: Vec<&str> = all.events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["ToolCall10", "AuditCheckpoint12", "ToolCall12"]);
        assert_eq!(all.moves, [("records", 10, 13), ("checkpoints", 5, 13)]);

        let two = plan(reads(), &subscribed, 2);
        assert_eq!(two.events.len(), 2);
        assert_eq!(two.moves, [("records", 10, 12), ("checkpoints", 5, 13)]);

        let none = plan(reads(), &[Kind::PolicyChanged].into(), 10);
        assert!(none.events.is_empty());
        assert_eq!(none.moves, [("records", 10, 13), ("checkpoints", 5, 13)]);
        assert_eq!(message_id("wh", &all.events), message_id("wh", &all.events));
        assert_ne!(message_id("wh", &all.events), message_id("wh", &two.events));
    }
}
