//! The audit trail: one record per call (with its correlation fields), the worker's outbox of records waiting for the
//! collector, and the policy document of each configuration.

pub mod correlation;
pub mod outbox;
pub mod policy_snapshot;
pub mod record;
