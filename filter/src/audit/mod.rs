//! The audit trail: one record per call (with its correlation fields), what it keeps of the
//! call's input, the worker's outbox of records waiting for the collector, and the policy
//! document of each configuration.

pub mod correlation;
pub mod input;
pub mod outbox;
pub mod policy_snapshot;
pub mod record;
