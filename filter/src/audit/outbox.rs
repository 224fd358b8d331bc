//! The audit outbox of one worker: serialized records wait here, bounded in count and bytes,
//! and leave in batches, one batch in flight at a time, in order. A failed batch stays at the
//! front and is retried after a growing delay; the collector stores each record id once, so a
//! batch that was stored but whose answer was lost is harmless to resend.
//!
//! With `auditFailureMode: closed` a call is admitted only once room for its records is
//! reserved ([`Outbox::reserve`]); the records of an admitted call are then always kept.

use std::collections::VecDeque;
use std::time::Duration;

use crate::auth::keys::jwks::millis;

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Vec<u8>>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    batch_size: usize,
    max_retry_delay: u64,
    /// Records of the batch in flight (the first `in_flight` of the queue).
    in_flight: Option<usize>,
    failures: u32,
    next_attempt_at: u64,
    /// Room promised to admitted calls whose records are not queued yet.
    reserved: Reservation,
    /// How many waiting records a tick sends at once ([`Outbox::due`]).
    early_batch: usize,
    /// How long (ms) fewer records wait after the last batch before a tick sends them.
    max_wait: u64,
    last_sent_at: u64,
    /// The body of the last batch, its buffer reused for the next: a fresh one per batch
    /// (up to `batch_size` records) went back to the allocator and was asked for again.
    batch: Vec<u8>,
}

/// Room in the buffer promised to one call: its records and an estimate of their bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    records: usize,
    bytes: usize,
}

/// Bytes reserved per record on top of the request body (identity, scopes, scan report).
const RECORD_OVERHEAD_BYTES: usize = 2048;

impl Reservation {
    /// Room for `records` records of a request whose body has `body_bytes` bytes: each
    /// record's input comes from that body, and one longer than `max_input_bytes` is stored
    /// as its first `max_input_bytes` (at most twice that once escaped as a JSON string).
    pub fn estimate(records: usize, body_bytes: usize, max_input_bytes: usize) -> Self {
        let inputs = body_bytes.min(records.saturating_mul(max_input_bytes.saturating_mul(2)));
        Reservation {
            records,
            bytes: inputs.saturating_add(records.saturating_mul(RECORD_OVERHEAD_BYTES)),
        }
    }
}

/// What became of a sent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Stored (2xx), or partly refused as invalid (422): either way, done with it.
    Done,
    /// Refused for good (400, 413): retrying cannot help; the records are dropped.
    Rejected,
    /// Timeout, connection failure, 5xx, 401/403/429: keep the batch and retry.
    Retry,
}

impl Delivery {
    pub fn from_status(status: Option<u32>) -> Self {
        match status {
            Some(200..=299 | 422) => Delivery::Done,
            Some(400 | 413) => Delivery::Rejected,
            _ => Delivery::Retry,
        }
    }
}

impl Outbox {
    pub fn new(
        max_records: usize,
        max_bytes: usize,
        batch_size: usize,
        max_retry_delay: Duration,
    ) -> Self {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            max_records,
            max_bytes,
            batch_size,
            max_retry_delay: millis(max_retry_delay),
            in_flight: None,
            failures: 0,
            next_attempt_at: 0,
            reserved: Reservation::default(),
            early_batch: 1,
            max_wait: 0,
            last_sent_at: 0,
            batch: Vec::new(),
        }
    }

    /// Ticks send a batch as soon as `early_batch` records wait, fewer once `max_wait` has
    /// passed since the last batch (without this, any that wait). Small, frequent batches
    /// keep each write to the collector short: a write of 100 records held a worker for about
    /// a millisecond (the calls arriving meanwhile waited), one of 10 a tenth of that.
    pub fn sending_early(mut self, early_batch: usize, max_wait: Duration) -> Self {
        self.early_batch = early_batch.max(1);
        self.max_wait = millis(max_wait);
        self
    }

    /// How many records must wait for a tick at `now` to send them (a failed batch is sent
    /// again whatever its size once its backoff has passed).
    pub fn due(&self, now: u64) -> usize {
        if self.failures > 0 || now.saturating_sub(self.last_sent_at) >= self.max_wait {
            1
        } else {
            self.early_batch
        }
    }

    /// The admission rule of `auditFailureMode: closed`: the call is admitted when its records
    /// fit beside those waiting and those promised to other admitted calls, in count and bytes.
    /// On admission the room is held until [`Outbox::release`].
    pub fn reserve(&mut self, want: Reservation) -> Option<Reservation> {
        let records = self.queue.len() + self.reserved.records + want.records;
        let bytes = self
            .bytes
            .saturating_add(self.reserved.bytes)
            .saturating_add(want.bytes);
        if records > self.max_records || bytes > self.max_bytes {
            return None;
        }
        self.reserved.records += want.records;
        self.reserved.bytes += want.bytes;
        Some(want)
    }

    /// Gives back room reserved for a call (its records are queued with [`Outbox::push_admitted`]).
    pub fn release(&mut self, r: Reservation) {
        self.reserved.records = self.reserved.records.saturating_sub(r.records);
        self.reserved.bytes = self.reserved.bytes.saturating_sub(r.bytes);
    }

    /// Queues the record of an admitted call: kept whatever its size (the count was reserved;
    /// the bytes only estimated).
    pub fn push_admitted(&mut self, record: Vec<u8>) {
        self.bytes += record.len();
        self.queue.push_back(record);
    }

    /// Queues a serialized record; `false` when the buffer (less the room reserved for admitted
    /// calls) is full and the record is not queued.
    pub fn push(&mut self, record: Vec<u8>) -> bool {
        if self.queue.len() + self.reserved.records >= self.max_records
            || self.bytes + self.reserved.bytes + record.len() > self.max_bytes
        {
            return false;
        }
        self.bytes += record.len();
        self.queue.push_back(record);
        true
    }

    /// The next batch body to post, when none is in flight, at least `min_records` wait and any
    /// retry delay has passed. Ticks send what is due ([`Outbox::due`]); an acknowledged batch
    /// is followed at once only by a full one, so that batches grow with the load.
    pub fn next_batch(&mut self, now: u64, min_records: usize) -> Option<&[u8]> {
        let waiting = self.queue.len();
        if self.in_flight.is_some()
            || waiting == 0
            || waiting < min_records
            || now < self.next_attempt_at
        {
            return None;
        }
        let n = self.queue.len().min(self.batch_size);
        const OPEN: &[u8] = b"{\"records\":[";
        let records: usize = self.queue.iter().take(n).map(|r| r.len() + 1).sum();
        let body = &mut self.batch;
        body.clear();
        // Sized up front: a batch grown from empty would be copied over again as it doubles.
        body.reserve(OPEN.len() + records + 2);
        body.extend_from_slice(OPEN);
        for (i, record) in self.queue.iter().take(n).enumerate() {
            if i > 0 {
                body.push(b',');
            }
            body.extend_from_slice(record);
        }
        body.extend_from_slice(b"]}");
        self.in_flight = Some(n);
        self.last_sent_at = now;
        Some(&self.batch)
    }

    /// Settles the batch in flight; returns how many records it held.
    pub fn settle(&mut self, delivery: Delivery, now: u64) -> usize {
        let Some(n) = self.in_flight.take() else {
            return 0;
        };
        match delivery {
            Delivery::Done | Delivery::Rejected => {
                for record in self.queue.drain(..n) {
                    self.bytes -= record.len();
                }
                self.failures = 0;
                self.next_attempt_at = 0;
            }
            Delivery::Retry => {
                self.failures = self.failures.saturating_add(1);
                let delay = 100u64.saturating_mul(1 << self.failures.min(20).saturating_sub(1));
                self.next_attempt_at = now + delay.min(self.max_retry_delay);
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> Outbox {
        Outbox::new(4, 1024, 2, Duration::from_secs(1))
    }

    #[test]
    fn batches_in_order_one_in_flight() {
        let mut o = outbox();
        for r in ["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"] {
            assert!(o.push(r.into()));
        }
        assert_eq!(
            o.next_batch(0, 1).unwrap(),
            b"{\"records\":[{\"a\":1},{\"b\":2}]}"
        );
        assert_eq!(o.next_batch(0, 1), None, "one batch in flight");
        assert_eq!(o.settle(Delivery::Done, 0), 2);
        assert_eq!(o.next_batch(0, 2), None, "a follow-up batch must be full");
        assert_eq!(o.next_batch(0, 1).unwrap(), b"{\"records\":[{\"c\":3}]}");
        assert_eq!(o.settle(Delivery::Done, 0), 1);
        assert!(o.is_empty());
        assert_eq!(o.next_batch(0, 1), None);
    }

    #[test]
    fn failures_keep_the_batch_and_back_off() {
        let mut o = outbox();
        o.push("1".into());
        o.next_batch(0, 1).unwrap();
        o.settle(Delivery::Retry, 0);
        assert_eq!(o.len(), 1);
        assert_eq!(o.next_batch(99, 1), None);
        assert!(o.next_batch(100, 1).is_some());
        o.settle(Delivery::Retry, 100);
        assert_eq!(o.next_batch(299, 1), None);
        assert!(o.next_batch(300, 1).is_some());
        for i in 0..20 {
            o.settle(Delivery::Retry, 0);
            assert!(
                o.next_batch(1000, 1).is_some(),
                "delay capped at max_retry_delay ({i})"
            );
        }
        o.settle(Delivery::Rejected, 1000);
        assert!(o.is_empty());
    }

    #[test]
    fn ticks_send_a_small_batch_early_and_fewer_records_after_the_wait() {
        let mut o = Outbox::new(100, 1 << 20, 5, Duration::from_secs(1))
            .sending_early(3, Duration::from_millis(200));
        o.push("1".into());
        assert_eq!(o.due(1000), 1, "nothing sent yet: the wait is over");
        o.next_batch(1000, o.due(1000)).unwrap();
        o.settle(Delivery::Done, 1010);
        o.push("2".into());
        o.push("3".into());
        assert_eq!(o.due(1020), 3);
        assert_eq!(
            o.next_batch(1020, o.due(1020)),
            None,
            "two wait, three make a batch"
        );
        o.push("4".into());
        assert_eq!(
            o.next_batch(1020, o.due(1020)).unwrap(),
            b"{\"records\":[2,3,4]}"
        );
        o.settle(Delivery::Done, 1030);
        o.push("5".into());
        assert_eq!(o.next_batch(1219, o.due(1219)), None);
        assert_eq!(
            o.next_batch(1220, o.due(1220)).unwrap(),
            b"{\"records\":[5]}",
            "200 ms after the last batch"
        );
        o.settle(Delivery::Retry, 1230);
        assert_eq!(
            o.due(1240),
            1,
            "a failed batch goes again whatever its size"
        );
    }

    #[test]
    fn bounded_by_records_and_bytes() {
        let mut o = outbox();
        for _ in 0..4 {
            assert!(o.push("x".into()));
        }
        assert!(!o.push("x".into()));
        let mut o = Outbox::new(100, 10, 2, Duration::from_secs(1));
        assert!(o.push("12345".into()));
        assert!(!o.push("123456".into()));
        assert!(o.push("12345".into()));
    }

    #[test]
    fn admission_reserves_room_in_records_and_bytes() {
        let mut o = Outbox::new(3, 10_000, 2, Duration::from_secs(1));
        o.push("x".into());
        let two = o
            .reserve(Reservation::estimate(2, 0, usize::MAX))
            .expect("1 queued + 2 reserved fit in 3");
        assert_eq!(
            o.reserve(Reservation::estimate(1, 0, usize::MAX)),
            None,
            "full: queued and reserved count"
        );
        assert!(
            !o.push("y".into()),
            "an unadmitted record may not take reserved room"
        );
        o.release(two);
        o.push_admitted("a".into());
        o.push_admitted("b".into());
        assert_eq!(o.len(), 3);
        assert_eq!(o.reserve(Reservation::estimate(1, 0, usize::MAX)), None);
        o.next_batch(0, 1).unwrap();
        o.settle(Delivery::Done, 0);
        assert!(
            o.reserve(Reservation::estimate(1, 0, usize::MAX)).is_some(),
            "delivery frees room"
        );

        let mut o = Outbox::new(100, 5_000, 2, Duration::from_secs(1));
        assert_eq!(
            o.reserve(Reservation::estimate(2, 1_000, usize::MAX)),
            None,
            "2 records of ~5 KiB do not fit 5,000 bytes"
        );
        let one = o
            .reserve(Reservation::estimate(1, 1_000, usize::MAX))
            .unwrap();
        assert_eq!(
            o.reserve(Reservation::estimate(1, 0, usize::MAX)),
            None,
            "reserved bytes count"
        );
        o.release(one);
        o.push_admitted(b"z".repeat(6_000));
        assert_eq!(
            o.len(),
            1,
            "an admitted record is kept even above its estimate"
        );
        assert_eq!(o.reserve(Reservation::estimate(1, 0, usize::MAX)), None);
    }

    #[test]
    fn the_estimate_counts_an_input_up_to_its_stored_size() {
        assert_eq!(
            Reservation::estimate(1, 65_536, 16_384),
            Reservation::estimate(1, 32_768, usize::MAX),
            "a truncated input keeps at most twice the limit, escaped"
        );
        assert_eq!(
            Reservation::estimate(2, 1_000, 16_384),
            Reservation::estimate(2, 1_000, usize::MAX),
            "inputs come from the body: never more than it"
        );
    }

    #[test]
    fn status_classification() {
        assert_eq!(Delivery::from_status(Some(200)), Delivery::Done);
        assert_eq!(Delivery::from_status(Some(422)), Delivery::Done);
        assert_eq!(Delivery::from_status(Some(413)), Delivery::Rejected);
        for s in [None, Some(401), Some(429), Some(500), Some(503)] {
            assert_eq!(Delivery::from_status(s), Delivery::Retry);
        }
    }
}
