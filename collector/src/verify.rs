//! `acp-collector verify`: checks the database offline, tenant by tenant, in sequence order.
//!
//! - Expiry notes: signature, origin, and that they remove consecutive prefixes; the latest
//!   one's frontier stands in for the removed records.
//! - Records: sequence numbers gapless from the end of the expired prefix; the leaf hash
//!   recomputed from the stored bytes and the tree hashes recomputed from the records before;
//!   the `id` and `tenant` columns equal the JSON's.
//! - Checkpoints: signature, origin, and root equal to the root recomputed from the records at
//!   its size. All roots come from one sequence of leaves, so consecutive checkpoints are
//!   consistent (each tree extends the one before). Checkpoints older than the expired prefix
//!   can only be checked by their signature.
//!
//! - Policy versions: document hashes, hash chain and signed notes ([`crate::policies::store`]).
//!
//! The first problem of a tenant is reported with the record it concerns.
//!
//! How the records are read and hashed (the checks and their order are the same): rows are read
//! in blocks of [`BLOCK_ROWS`] with one statement on the calling thread, whose connection stays
//! there; a checking thread hashes each block's leaves in contiguous ranges on every core
//! (`std::thread::scope`: two stages and a split per block need no pool or extra dependency),
//! then walks the block in order for what needs the leaves before it (gapless `seq`, tree
//! hashes, roots). A bounded channel holds the blocks in flight, so memory stays a few blocks
//! however large a tenant is. On SQLite all tenants are checked in one pass over the table in
//! storage order ([`scan_all`]); a tenant with any problem there is checked again alone, in
//! `tseq` order ([`verify_tenant`]), which names the problem.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use anyhow::{bail, ensure, Context};
use tlog_tiles::checkpoint::Checkpoint;
use tlog_tiles::tlog::Hash;

use crate::ledger::checkpoints::{self, Expired, StoredNote};
use crate::ledger::merkle::{self, Frontier, Mismatch};
use crate::ledger::signing::Verifiers;
use crate::policies;
use crate::store::{Backend, Conn, Store};

/// What verified for one tenant.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Summary {
    /// Records stored.
    records: u64,
    /// Seq of the first stored record (records below it expired).
    first: u64,
    checkpoints: usize,
    expiries: usize,
    /// Size of the latest checkpoint.
    checkpointed: u64,
}

pub fn run(
    db: &Path,
    url: Option<&str>,
    log_name: &str,
    public_keys: &[String],
    tenant: Option<&str>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        url.is_some() || db.exists(),
        "no database at {}",
        db.display()
    );
    let database = Store::open(db, url)?;
    let conn = database.read().context("cannot open the database")?;
    let conn = &*conn;
    if conn.backend() == Backend::Sqlite {
        // Read the file through a memory map (up to SQLite's 2 GiB limit) instead of copying
        // every page through read(2): the reader thread, which feeds the hashing threads, spent
        // most of its time in that copy.
        conn.for_each("PRAGMA mmap_size = 2147418112", &[], &mut |_| Ok(()))?;
    }
    let vkeys = if public_keys.is_empty() {
        eprintln!(
            "warning: no --public-key given: trusting the keys recorded in the database, \
             which someone able to rewrite it could replace"
        );
        checkpoints::keys(conn)?
    } else {
        public_keys.to_vec()
    };
    let trusted = Verifiers::new(vkeys.iter().map(String::as_str))?;
    ensure!(
        !trusted.is_empty(),
        "no public key to check signatures with"
    );
    let tenants = match tenant {
        Some(tenant) => vec![tenant.to_owned()],
        None => {
            let mut tenants = checkpoints::tenants(conn)?;
            tenants.extend(policies::store::tenants(conn)?);
            tenants.sort();
            tenants.dedup();
            tenants
        }
    };
    let started = Instant::now();
    let mut scanned = match (tenant, conn.backend()) {
        (None, Backend::Sqlite) => scan_all(conn, &trusted, log_name, &tenants),
        _ => Vec::new(),
    };
    let (mut records, mut failed) = (0, 0);
    for (i, tenant) in tenants.iter().enumerate() {
        let summary = match scanned.get_mut(i).and_then(Option::take) {
            Some(summary) => Ok(summary),
            None => verify_tenant(conn, &trusted, log_name, tenant),
        };
        let checked = summary.and_then(|s| {
            Ok((
                s,
                policies::store::verify_chain(conn, &trusted, log_name, tenant)?,
            ))
        });
        match checked {
            Ok((s, policy_versions)) => {
                records += s.records;
                let expired = match s.first {
                    0 => String::new(),
                    first => format!(
                        ", seq 0..{} expired ({} expiry notes)",
                        first - 1,
                        s.expiries
                    ),
                };
                println!(
                    "{tenant}: ok: {} records{expired}, {} checkpoints (latest covers {} of {}), \
                     {policy_versions} policy versions",
                    s.records,
                    s.checkpoints,
                    s.checkpointed,
                    s.first + s.records
                );
            }
            Err(err) => {
                failed += 1;
                println!("{tenant}: FAILED: {err:#}");
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "verified {records} records of {} tenants in {seconds:.2} s ({:.0} records/s)",
        tenants.len(),
        records as f64 / seconds.max(1e-9)
    );
    ensure!(
        failed == 0,
        "{failed} of {} tenants failed verification",
        tenants.len()
    );
    Ok(())
}

/// Roots the records must reproduce, by tree size, with what stated them.
type Expected = BTreeMap<u64, Vec<(Hash, String)>>;

pub(crate) fn verify_tenant(
    conn: &dyn Conn,
    trusted: &Verifiers,
    log_name: &str,
    tenant: &str,
) -> anyhow::Result<Summary> {
    let mut prepared = prepare(conn, trusted, log_name, tenant)?;
    prepared.checker = check_records(conn, tenant, prepared.checker)?;
    prepared.finish()
}

/// A tenant whose expiry notes and checkpoints have been checked, ready for its records.
#[derive(Default)]
struct Prepared {
    checker: Checker,
    checkpoints: usize,
    expiries: usize,
    /// Size of the latest checkpoint.
    checkpointed: u64,
}

/// Checks `tenant`'s expiry notes and checkpoints (signatures, origins, the expired prefixes)
/// and states the roots its records must reproduce.
fn prepare(
    conn: &dyn Conn,
    trusted: &Verifiers,
    log_name: &str,
    tenant: &str,
) -> anyhow::Result<Prepared> {
    let origin = checkpoints::origin(log_name, tenant);
    let mut expected = Expected::new();
    let mut frontier = Frontier::default();
    let expiries = checkpoints::expiries(conn, tenant)?;
    for stored in &expiries {
        let (checkpoint, label) = open(trusted, &origin, stored, "expiry note")?;
        let expired = Expired::parse(checkpoint.extension())
            .with_context(|| format!("{label} does not say what it removed"))?;
        ensure!(
            expired.from == frontier.size() && checkpoint.size() >= expired.to,
            "{label} removes seq {}..{} but the records before ended at seq {}",
            expired.from,
            expired.to,
            frontier.size()
        );
        expected
            .entry(checkpoint.size())
            .or_default()
            .push((*checkpoint.hash(), label));
        frontier = expired.frontier;
    }
    let first = frontier.size();
    let stored_checkpoints = checkpoints::all(conn, tenant)?;
    for stored in &stored_checkpoints {
        let (checkpoint, label) = open(trusted, &origin, stored, "checkpoint")?;
        expected
            .entry(checkpoint.size())
            .or_default()
            .push((*checkpoint.hash(), label));
    }
    // Checkpoints of trees that ended before the expired prefix verify by signature only.
    let mut expected = expected.split_off(&first);
    check_roots(&mut expected, &frontier, first)?;

    Ok(Prepared {
        checker: Checker {
            first,
            frontier,
            expected,
            records: 0,
        },
        checkpoints: stored_checkpoints.len(),
        expiries: expiries.len(),
        checkpointed: stored_checkpoints.last().map_or(0, |c| c.tree_size),
    })
}

impl Prepared {
    /// The summary once every record has been through the checker: fails when a root stated
    /// for a larger tree is left, the records that would complete it missing.
    fn finish(self) -> anyhow::Result<Summary> {
        let Checker {
            first,
            frontier,
            expected,
            records,
        } = self.checker;
        if let Some((size, stated)) = expected.first_key_value() {
            let next = frontier.size();
            bail!(
            "{} removed: {} covers {size} records but the store ends before seq {next}, so seq \
             {next}..{} is missing",
            count(size - next),
            stated[0].1,
            size - 1
        );
        }
        Ok(Summary {
            records,
            first,
            checkpoints: self.checkpoints,
            expiries: self.expiries,
            checkpointed: self.checkpointed,
        })
    }
}

/// Rows read and hashed together. A block of typical records is a few MiB.
const BLOCK_ROWS: usize = 4096;
/// Blocks read ahead of the check: with the one being read and the one being checked, at most
/// `READ_AHEAD + 2` blocks of a tenant are in memory, however many records it has.
const READ_AHEAD: usize = 2;
/// Below this many rows a block is hashed by the checking thread alone.
const PARALLEL_MIN_ROWS: usize = 512;

/// Checks a tenant's records in `tseq` order, as [`Checker::next`] one at a time, with the work
/// spread over threads (`std::thread::scope`, no pool to keep): the calling thread reads the
/// rows in blocks with one statement (the connection stays on its thread), and a checking
/// thread hashes each block's leaves on every core, then walks the block in order, where the
/// tree hashes and roots need the leaves before them. The first problem in `tseq` order is the
/// one reported, whichever thread saw it.
fn check_records(conn: &dyn Conn, tenant: &str, checker: Checker) -> anyhow::Result<Checker> {
    let threads = hashing_threads();
    let key = tenant_key(tenant);
    let (full_tx, full_rx) = mpsc::sync_channel::<Block>(READ_AHEAD);
    let (free_tx, free_rx) = mpsc::sync_channel::<Block>(READ_AHEAD + 2);
    std::thread::scope(|scope| {
        let (key, tenant) = (&key, tenant);
        let checking = scope.spawn(move || -> anyhow::Result<Checker> {
            let mut checker = checker;
            for mut block in full_rx {
                block.hash(tenant, key, threads);
                checker.block(&mut block)?;
                // Reused by the reader unless enough are waiting already.
                let _ = free_tx.try_send(block);
            }
            Ok(checker)
        });
        let read = read_blocks(conn, tenant, &full_tx, &free_rx);
        drop(full_tx);
        let checked = checking
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        // A problem in the rows read comes before the read error that followed them.
        let checker = checked?;
        read?;
        Ok(checker)
    })
}

/// Rows buffered in the partly filled blocks of [`scan_all`] at most, over all tenants.
const SCAN_BUFFERED_ROWS: usize = 2 * BLOCK_ROWS;

/// Checks every tenant in one pass over the SQLite table in storage order, which needs no index
/// lookup per row: SQLite has a single writer, which stores each tenant's records in `tseq`
/// order. A tenant's summary is returned only if its records came in gapless `tseq` order and
/// every check held, which is then exactly what [`verify_tenant`] finds (the same rows in the
/// same order). Every other tenant (all of them if a row cannot be read) is `None`, for
/// [`verify_tenant`] to check again in `tseq` order and name its first problem.
pub(crate) fn scan_all(
    conn: &dyn Conn,
    trusted: &Verifiers,
    log_name: &str,
    tenants: &[String],
) -> Vec<Option<Summary>> {
    let mut prepared: Vec<Option<Prepared>> = tenants
        .iter()
        .map(|t| prepare(conn, trusted, log_name, t).ok())
        .collect();
    let checkers: Vec<Option<Checker>> = prepared
        .iter_mut()
        .map(|p| p.as_mut().map(|p| std::mem::take(&mut p.checker)))
        .collect();
    let index: HashMap<&str, usize> = tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.as_str(), i))
        .collect();
    let keys: Vec<String> = tenants.iter().map(|t| tenant_key(t)).collect();
    let threads = hashing_threads();
    let (full_tx, full_rx) = mpsc::sync_channel::<(usize, Block)>(READ_AHEAD);
    let (free_tx, free_rx) = mpsc::sync_channel::<Block>(READ_AHEAD + 2);
    std::thread::scope(|scope| {
        let keys = &keys;
        let checking = scope.spawn(move || {
            let mut checkers = checkers;
            for (i, mut block) in full_rx {
                if let Some(checker) = &mut checkers[i] {
                    block.hash(&tenants[i], &keys[i], threads);
                    if checker.block(&mut block).is_err() {
                        checkers[i] = None;
                    }
                }
                let _ = free_tx.try_send(block);
            }
            checkers
        });
        let read = scan_blocks(conn, &index, &full_tx, &free_rx);
        drop(full_tx);
        let checkers = checking
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        if read.is_err() {
            return tenants.iter().map(|_| None).collect();
        }
        prepared
            .into_iter()
            .zip(checkers)
            .map(|(prepared, checker)| {
                let mut prepared = prepared?;
                prepared.checker = checker?;
                prepared.finish().ok()
            })
            .collect()
    })
}

/// Reads every record in storage order into per-tenant blocks for `full` (tagged with the
/// tenant's index); records of tenants not in `index` are skipped.
fn scan_blocks(
    conn: &dyn Conn,
    index: &HashMap<&str, usize>,
    full: &mpsc::SyncSender<(usize, Block)>,
    free: &mpsc::Receiver<Block>,
) -> anyhow::Result<()> {
    let mut blocks: Vec<Block> = index.iter().map(|_| Block::default()).collect();
    let mut buffered = 0;
    let send = |i: usize, blocks: &mut Vec<Block>| {
        full.send((i, std::mem::replace(&mut blocks[i], recycled(free))))
            .map_err(|_| Stopped)
    };
    let sql = "SELECT tseq, id, tenant, json, hashes FROM records ORDER BY seq";
    conn.for_each(sql, &[], &mut |row| {
        let tenant = row.text(2)?;
        let Some(&i) = index.get(tenant) else {
            return Ok(());
        };
        let block = &mut blocks[i];
        block.push(
            row.get(0)?,
            row.text(1)?,
            tenant,
            row.text(3)?,
            row.blob(4)?,
        );
        buffered += 1;
        if block.len() == BLOCK_ROWS {
            buffered -= BLOCK_ROWS;
            send(i, &mut blocks)?;
        } else if buffered >= SCAN_BUFFERED_ROWS {
            for i in 0..blocks.len() {
                if blocks[i].len() > 0 {
                    send(i, &mut blocks)?;
                }
            }
            buffered = 0;
        }
        Ok(())
    })?;
    for i in 0..blocks.len() {
        if blocks[i].len() > 0 {
            send(i, &mut blocks)?;
        }
    }
    Ok(())
}

/// Reads `tenant`'s records in `tseq` order into blocks for `full`, taking emptied blocks back
/// from `free`. Stops quietly when the checker has stopped; the rows read before a read error
/// are sent before it is returned.
fn read_blocks(
    conn: &dyn Conn,
    tenant: &str,
    full: &mpsc::SyncSender<Block>,
    free: &mpsc::Receiver<Block>,
) -> anyhow::Result<()> {
    let sql =
        "SELECT tseq, id, tenant, json, hashes FROM records WHERE tenant = ?1 ORDER BY tseq, seq";
    let mut block = Block::default();
    let read = conn.for_each(sql, &[tenant.into()], &mut |row| {
        let seq: Option<i64> = row.get(0)?;
        let id = row.text(1)?;
        match (row.text(3), row.blob(4), row.text(2)) {
            (Ok(json), Ok(hashes), Ok(tenant)) => block.push(seq, id, tenant, json, hashes),
            (json, hashes, tenant) => {
                // Reported in its place by the checker, after the rows before it.
                block.broken = Some(Broken {
                    seq,
                    id: id.to_owned(),
                    json: json.map(str::to_owned),
                    hashes: hashes.map(<[u8]>::to_vec),
                    tenant: tenant.map(str::to_owned),
                });
                bail!(Stopped);
            }
        }
        if block.len() == BLOCK_ROWS {
            full.send(std::mem::replace(&mut block, recycled(free)))
                .map_err(|_| Stopped)?;
        }
        Ok(())
    });
    if block.len() > 0 || block.broken.is_some() {
        // Fails only when the checker has stopped, having found a problem.
        let _ = full.send(block);
    }
    match read {
        Err(err) if err.is::<Stopped>() => Ok(()),
        read => read,
    }
}

/// Threads that hash a block's leaves: one per core.
fn hashing_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// An emptied block the checker handed back, or a new one when none is waiting.
fn recycled(free: &mpsc::Receiver<Block>) -> Block {
    let mut block = free.try_recv().unwrap_or_default();
    block.clear();
    block
}

/// Reading stopped: the checker found a problem, or a row could not be read (it is sent to the
/// checker as [`Block::broken`]).
#[derive(Debug)]
struct Stopped;

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("reading stopped")
    }
}

impl std::error::Error for Stopped {}

/// The sequential part of the check of one tenant's records.
#[derive(Default)]
struct Checker {
    /// Seq of the first record kept (the ones before expired).
    first: u64,
    /// The tree of the records checked so far.
    frontier: Frontier,
    /// Roots still to check.
    expected: Expected,
    /// Records checked.
    records: u64,
}

/// One record as the checker sees it: its columns, or the error of reading one, its leaf hash
/// and whether its `id` and `tenant` columns are its JSON's ([`names_match`]).
struct RowCheck<'a> {
    seq: Option<i64>,
    id: &'a str,
    leaf: anyhow::Result<Hash>,
    hashes: anyhow::Result<&'a [u8]>,
    tenant: anyhow::Result<&'a str>,
    names_match: bool,
}

impl Checker {
    /// Checks the next record in `tseq` order: its sequence number, leaf hash, stored tree
    /// hashes, `id` and `tenant` columns, then the roots stated for the tree it completes. The
    /// first problem fails the check.
    fn next(&mut self, row: RowCheck<'_>) -> anyhow::Result<()> {
        let RowCheck {
            seq,
            id,
            leaf,
            hashes,
            tenant,
            names_match,
        } = row;
        let (first, next) = (self.first, self.frontier.size());
        let seq = match seq.map(|s| s as u64) {
            None => bail!("record id {id:?} was inserted: it has no sequence number"),
            Some(seq) if seq < first => bail!(
                "record seq {seq} (id {id:?}) was inserted: seq 0..{} expired",
                first - 1
            ),
            Some(seq) if seq < next => bail!(
                "record seq {seq} (id {id:?}) was inserted: another record already has seq {seq}"
            ),
            Some(seq) if seq > next => bail!(
                "{} removed: seq {next}..{} is missing (the next record present is seq {seq}, \
                 id {id:?})",
                count(seq - next),
                seq - 1
            ),
            Some(seq) => seq,
        };
        let leaf = leaf?;
        match self.frontier.append_checked(leaf, hashes?) {
            Ok(()) => {}
            Err(Mismatch::Leaf) => bail!(
                "record seq {seq} (id {id:?}) was altered: its bytes no longer match its leaf hash"
            ),
            Err(Mismatch::Tree) => bail!(
                "record seq {seq} (id {id:?}): its stored tree hashes disagree with the records \
                 before it: a record at or before seq {seq} was altered"
            ),
        }
        let tenant_column = tenant?;
        ensure!(
            names_match,
            "record seq {seq} (id {id:?}) was altered: its id or tenant column ({tenant_column:?}) \
             differs from its JSON"
        );
        self.records += 1;
        check_roots(&mut self.expected, &self.frontier, seq + 1)
    }

    /// Checks the rows of a hashed block, in order, then its broken row if any.
    fn block(&mut self, block: &mut Block) -> anyhow::Result<()> {
        for i in 0..block.len() {
            self.next(RowCheck {
                seq: block.seqs[i],
                id: block.ids.get(i),
                leaf: Ok(block.leaves[i]),
                hashes: Ok(block.hashes.get(i)),
                tenant: Ok(block.tenants.get(i)),
                names_match: block.names_match[i],
            })?;
        }
        if let Some(broken) = block.broken.take() {
            self.next(RowCheck {
                seq: broken.seq,
                id: &broken.id,
                leaf: broken.json.map(|json| merkle::leaf_hash(json.as_bytes())),
                hashes: broken
                    .hashes
                    .as_deref()
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
                tenant: broken
                    .tenant
                    .as_deref()
                    .map_err(|e| anyhow::anyhow!("{e:#}")),
                // Not reached: one of the columns failed to read.
                names_match: false,
            })?;
        }
        Ok(())
    }
}

/// Rows of one tenant in `tseq` order, their text and blobs end to end in a few buffers (no
/// allocation per row; blocks are reused), and once hashed ([`Block::hash`]) each row's leaf
/// hash and [`names_match`].
#[derive(Default)]
struct Block {
    seqs: Vec<Option<i64>>,
    ids: Texts,
    tenants: Texts,
    json: Texts,
    hashes: Blobs,
    leaves: Vec<Hash>,
    names_match: Vec<bool>,
    /// The row after the last one, one of whose columns could not be read.
    broken: Option<Broken>,
}

/// A row with a column that could not be read, kept to be reported in its place.
struct Broken {
    seq: Option<i64>,
    id: String,
    json: anyhow::Result<String>,
    hashes: anyhow::Result<Vec<u8>>,
    tenant: anyhow::Result<String>,
}

impl Block {
    fn len(&self) -> usize {
        self.seqs.len()
    }

    fn clear(&mut self) {
        self.seqs.clear();
        self.ids.clear();
        self.tenants.clear();
        self.json.clear();
        self.hashes.clear();
        self.leaves.clear();
        self.names_match.clear();
        self.broken = None;
    }

    fn push(&mut self, seq: Option<i64>, id: &str, tenant: &str, json: &str, hashes: &[u8]) {
        self.seqs.push(seq);
        self.ids.push(id);
        self.tenants.push(tenant);
        self.json.push(json);
        self.hashes.push(hashes);
    }

    /// Computes every row's leaf hash and [`names_match`], in contiguous leaf ranges on up to
    /// `threads` threads (leaf hashes are independent of each other). `key` is
    /// [`tenant_key`] of `tenant`, the tenant the rows were selected by.
    fn hash(&mut self, tenant: &str, key: &str, threads: usize) {
        let rows = self.len();
        self.leaves.clear();
        self.leaves.resize(rows, tlog_tiles::tlog::EMPTY_HASH);
        self.names_match.clear();
        self.names_match.resize(rows, false);
        let Block {
            ids,
            tenants,
            json,
            leaves,
            names_match,
            ..
        } = self;
        let (ids, tenants, json) = (&*ids, &*tenants, &*json);
        let range = |start: usize, leaves: &mut [Hash], names: &mut [bool]| {
            hash_rows(ids, tenants, json, (tenant, key), start, leaves, names);
        };
        let parts = if rows < PARALLEL_MIN_ROWS {
            1
        } else {
            threads.max(1)
        };
        let chunk = rows.div_ceil(parts).max(1);
        std::thread::scope(|scope| {
            let mut ranges = leaves
                .chunks_mut(chunk)
                .zip(names_match.chunks_mut(chunk))
                .enumerate();
            let own = ranges.next();
            for (i, (leaves, names)) in ranges {
                scope.spawn(move || range(i * chunk, leaves, names));
            }
            if let Some((_, (leaves, names))) = own {
                range(0, leaves, names);
            }
        });
    }
}

/// The leaf hashes and [`names_match`] of rows `start..start + leaves.len()`.
fn hash_rows(
    ids: &Texts,
    tenants: &Texts,
    json: &Texts,
    (tenant, key): (&str, &str),
    start: usize,
    leaves: &mut [Hash],
    names: &mut [bool],
) {
    for (i, (leaf, names)) in leaves.iter_mut().zip(names).enumerate() {
        let row = start + i;
        let text = json.get(row);
        *leaf = merkle::leaf_hash(text.as_bytes());
        let column = tenants.get(row);
        *names = if column == tenant {
            names_match(text, ids.get(row), key)
        } else {
            names_match(text, ids.get(row), &tenant_key(column))
        };
    }
}

/// Strings end to end in one buffer.
#[derive(Default)]
struct Texts {
    text: String,
    ends: Vec<usize>,
}

impl Texts {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.ends.push(self.text.len());
    }

    fn get(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }
}

/// Byte strings end to end in one buffer.
#[derive(Default)]
struct Blobs {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Blobs {
    fn push(&mut self, b: &[u8]) {
        self.bytes.extend_from_slice(b);
        self.ends.push(self.bytes.len());
    }

    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.bytes[start..self.ends[i]]
    }

    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }
}

/// The checkpoint of a stored note signed by a trusted key for the tree size it is stored
/// under, and how to name it.
fn open(
    trusted: &Verifiers,
    origin: &str,
    stored: &StoredNote,
    kind: &str,
) -> anyhow::Result<(Checkpoint, String)> {
    let label = format!("the {kind} of tree size {}", stored.tree_size);
    let checkpoint = trusted
        .open(&stored.note, origin)
        .with_context(|| label.clone())?;
    ensure!(
        checkpoint.size() == stored.tree_size,
        "{label} is signed for tree size {}",
        checkpoint.size()
    );
    Ok((checkpoint, label))
}

/// Checks the roots stated for the tree of `frontier` (of `size` records).
fn check_roots(expected: &mut Expected, frontier: &Frontier, size: u64) -> anyhow::Result<()> {
    let Some(stated) = expected.remove(&size) else {
        return Ok(());
    };
    let root = frontier.root();
    for (hash, label) in stated {
        ensure!(
            hash == root,
            "{label} does not match the records: a record before seq {size} was altered \
             (with its stored hashes) or the checkpoint is not of this tree"
        );
    }
    Ok(())
}

fn count(n: u64) -> String {
    match n {
        1 => "1 record".to_owned(),
        n => format!("{n} records"),
    }
}

/// Whether the `id` and `tenant` columns are the stored JSON's. That JSON is the compact
/// serialization of an `AuditRecord`, which starts with `{"id":` and has `"tenantId":` once at
/// the top level; text search keeps this check from costing more than the hashing. (A nested
/// `"tenantId"` can only make it pass wrongly, never fail wrongly, and a record moved to another
/// tenant still breaks both tenants' sequences.) `tenant_key` is [`tenant_key`] of the tenant
/// column.
fn names_match(json: &str, id: &str, tenant_key: &str) -> bool {
    let Some(rest) = json.strip_prefix("{\"id\":") else {
        return false;
    };
    // JSON escapes only control characters, `"` and `\\`; other ids are their own JSON text
    // between quotes, compared without building it.
    let id_matches = if id.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        rest.starts_with(&serde_json::Value::from(id).to_string())
    } else {
        rest.strip_prefix('"')
            .and_then(|r| r.strip_prefix(id))
            .is_some_and(|r| r.starts_with('"'))
    };
    id_matches && json.contains(tenant_key)
}

/// `"tenantId":` and the tenant as a JSON string, as the stored JSON has it.
fn tenant_key(tenant: &str) -> String {
    format!("\"tenantId\":{}", serde_json::Value::from(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::ingest::check_batch;
    use crate::store::records::tests::sample;

    #[test]
    fn columns_are_checked_against_the_canonical_json() {
        let mut value = sample("id \"quoted\" é", "2026-03-15T14:23:07.142Z");
        value["tenantId"] = serde_json::json!("org/ünïcode \"x\"");
        let (records, _) = check_batch(vec![value]);
        let r = &records[0];
        let key = tenant_key(&r.tenant);
        assert!(names_match(&r.json, &r.id, &key));
        assert!(!names_match(&r.json, "other", &key));
        assert!(!names_match(&r.json, "id \"quoted\"", &key));
        assert!(!names_match(&r.json, "id \"quoted\" é\u{1}", &key));
        assert!(!names_match(&r.json, &r.id, &tenant_key("org_acme_corp")));
        let plain = &check_batch(vec![sample("r1", "2026-03-15T14:23:07.142Z")]).0[0];
        let key = tenant_key(&plain.tenant);
        assert!(names_match(&plain.json, "r1", &key));
        assert!(!names_match(&plain.json, "r", &key));
        assert!(!names_match(&plain.json, "r10", &key));
    }

    /// A block of `rows` records of tenant `org_acme_corp` with their stored hashes.
    fn block(rows: usize) -> Block {
        let mut block = Block::default();
        let mut tree = Frontier::default();
        for seq in 0..rows {
            let value = sample(&format!("r{seq}"), "2026-03-15T14:23:07.142Z");
            let r = &check_batch(vec![value]).0[0];
            let hashes = tree
                .next_hashes(merkle::leaf_hash(r.json.as_bytes()))
                .unwrap();
            tree.push(&hashes);
            block.push(
                Some(seq as i64),
                &r.id,
                &r.tenant,
                &r.json,
                &merkle::join_hashes(&hashes),
            );
        }
        block
    }

    fn checker() -> Checker {
        Checker {
            first: 0,
            frontier: Frontier::default(),
            expected: Expected::new(),
            records: 0,
        }
    }

    #[test]
    fn leaf_ranges_hashed_in_parallel_equal_the_serial_hashes() {
        let tenant = "org_acme_corp";
        let key = tenant_key(tenant);
        let mut serial = block(3 * PARALLEL_MIN_ROWS + 7);
        serial.hash(tenant, &key, 1);
        for threads in [2, 3, 8] {
            let mut parallel = block(3 * PARALLEL_MIN_ROWS + 7);
            parallel.hash(tenant, &key, threads);
            assert!(parallel.leaves == serial.leaves, "{threads} threads");
            assert_eq!(parallel.names_match, serial.names_match);
        }
        assert!(serial.names_match.iter().all(|&m| m));
        let mut checked = checker();
        checked.block(&mut serial).unwrap();
        assert_eq!(checked.records, serial.len() as u64);
    }

    #[test]
    fn a_record_altered_in_the_middle_of_a_range_is_named() {
        let tenant = "org_acme_corp";
        let rows = 3 * PARALLEL_MIN_ROWS + 7;
        let original = block(rows);
        let mut altered = Block::default();
        let middle = rows / 2 + 1;
        for i in 0..rows {
            let json = original.json.get(i);
            let json = if i == middle {
                json.replace("alice", "mallory")
            } else {
                json.to_owned()
            };
            altered.push(
                original.seqs[i],
                original.ids.get(i),
                tenant,
                &json,
                original.hashes.get(i),
            );
        }
        altered.hash(tenant, &tenant_key(tenant), 2);
        let err = checker().block(&mut altered).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "record seq {middle} (id \"r{middle}\") was altered: its bytes no longer match \
                 its leaf hash"
            )
        );
    }
}
