//! Each tenant's records form an append-only RFC 6962 / RFC 9162 Merkle tree in arrival order.
//! Record `seq` (0, 1, 2, ... per tenant, gapless) is leaf `seq`; its leaf hash is
//! SHA-256(0x00 || the stored JSON bytes), interior nodes SHA-256(0x01 || left || right).
//!
//! The hashing and the proofs are `tlog_tiles` (a port of Go's `sumdb/tlog`). Its storage
//! layout is kept: appending leaf `n` yields the leaf hash followed by the hashes of the
//! subtrees that leaf completes ([`tlog::stored_hashes_for_record_hash`]), and these are
//! stored with the record itself (column `hashes`). So the node at `(level, k)` lives in the
//! row of seq `(k + 1) * 2^level - 1`, at offset `level * 32`, and any proof reads
//! O(log n) rows. When retention removes a prefix of the tree, the hashes of its maximal
//! subtrees (the [`Frontier`] at the cut) are kept in the signed expiry note, which is all that
//! proofs over the remaining records need.

use tlog_tiles::tlog::{self, Hash, HashReader, HASH_SIZE};

use std::collections::HashMap;

use anyhow::Context;

use crate::store::{Backend, Conn, ConnExt};

pub use tlog::record_hash as leaf_hash;

/// The maximal complete subtrees of a tree of `size` leaves: enough to append the next leaf and
/// to compute the root. At most 64 hashes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    /// `(stored hash index, hash)`, left to right.
    nodes: Vec<(u64, Hash)>,
}

impl Frontier {
    /// Reads the frontier of a tree of `size` leaves from `hashes`.
    pub fn read(size: u64, hashes: &impl HashReader) -> Result<Self, tlog::Error> {
        let indexes = tlog::sub_tree_index(0, size, Vec::new());
        let nodes = indexes
            .iter()
            .copied()
            .zip(hashes.read_hashes(&indexes)?)
            .collect();
        Ok(Self { size, nodes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The hashes, left to right (as kept in an expiry note).
    pub fn hashes(&self) -> Vec<Hash> {
        self.nodes.iter().map(|(_, h)| *h).collect()
    }

    /// Rebuilds a frontier from [`Frontier::hashes`]; `None` when their count does not fit `size`.
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Option<Self> {
        let indexes = tlog::sub_tree_index(0, size, Vec::new());
        (indexes.len() == hashes.len()).then(|| Self {
            size,
            nodes: indexes.into_iter().zip(hashes.iter().copied()).collect(),
        })
    }

    /// The hashes to store with the next leaf (see the module comment); [`Frontier::push`]
    /// them once the leaf is stored.
    pub fn next_hashes(&self, leaf: Hash) -> Result<Vec<Hash>, tlog::Error> {
        tlog::stored_hashes_for_record_hash(self.size, leaf, self)
    }

    /// Appends the leaf whose stored hashes [`Frontier::next_hashes`] returned: the subtrees
    /// it completed replace the frontier's smallest ones.
    pub fn push(&mut self, stored: &[Hash]) {
        let merged = stored.len().saturating_sub(1);
        let first = tlog::stored_hash_index(0, self.size);
        self.nodes.truncate(self.nodes.len().saturating_sub(merged));
        if let Some(top) = stored.last() {
            self.nodes.push((first + merged as u64, *top));
        }
        self.size += 1;
    }

    /// Appends `leaf` if `stored` (a `hashes` column) holds exactly what
    /// [`Frontier::next_hashes`] returns for it, comparing in place (no allocation; `verify`
    /// runs this once per record). Otherwise the frontier is left as it was and the answer
    /// says which part differs.
    pub fn append_checked(&mut self, leaf: Hash, stored: &[u8]) -> Result<(), Mismatch> {
        if stored.is_empty()
            || !stored.len().is_multiple_of(HASH_SIZE)
            || stored[..HASH_SIZE] != leaf.0
        {
            return Err(Mismatch::Leaf);
        }
        // Each trailing 1 bit of the size completes a subtree with the frontier's smallest.
        let merged = self.size.trailing_ones() as usize;
        if stored.len() != (merged + 1) * HASH_SIZE || self.nodes.len() < merged {
            return Err(Mismatch::Tree);
        }
        let mut hash = leaf;
        for (level, chunk) in stored.chunks_exact(HASH_SIZE).skip(1).enumerate() {
            hash = tlog::node_hash(self.nodes[self.nodes.len() - 1 - level].1, hash);
            if chunk != hash.0 {
                return Err(Mismatch::Tree);
            }
        }
        let first = tlog::stored_hash_index(0, self.size);
        self.nodes.truncate(self.nodes.len() - merged);
        self.nodes.push((first + merged as u64, hash));
        self.size += 1;
        Ok(())
    }

    /// The root hash of the tree (RFC 6962 MTH).
    pub fn root(&self) -> Hash {
        tlog::tree_hash(self.size, self).unwrap_or(tlog::EMPTY_HASH)
    }
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|i| {
                self.nodes
                    .iter()
                    .find(|(j, _)| j == i)
                    .map(|(_, h)| *h)
                    .ok_or(tlog::Error::IndexesNotInTree)
            })
            .collect()
    }
}

/// How a record's stored hashes differ from the ones recomputed ([`Frontier::append_checked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mismatch {
    /// The leaf hash (the first one), or the column is not whole hashes.
    Leaf,
    /// The hashes of the subtrees the leaf completes.
    Tree,
}

/// Splits a `hashes` column into hashes; `None` when its length is not a multiple of 32.
pub fn split_hashes(blob: &[u8]) -> Option<Vec<Hash>> {
    if blob.is_empty() || !blob.len().is_multiple_of(HASH_SIZE) {
        return None;
    }
    blob.chunks_exact(HASH_SIZE)
        .map(|c| c.try_into().ok().map(Hash))
        .collect()
}

pub fn join_hashes(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// One tenant's stored tree, read from the database: the `hashes` of its records, and the
/// frontier of the latest expiry for the removed prefix.
pub struct StoredTree<'a> {
    conn: &'a dyn Conn,
    tenant: &'a str,
    expired: Option<Frontier>,
}

impl<'a> StoredTree<'a> {
    pub fn new(conn: &'a dyn Conn, tenant: &'a str, expired: Option<Frontier>) -> Self {
        Self {
            conn,
            tenant,
            expired,
        }
    }

    fn read_one(&self, index: u64) -> Result<Hash, tlog::Error> {
        if let Some(hash) = self
            .expired
            .as_ref()
            .and_then(|f| f.read_hashes(&[index]).ok())
        {
            return Ok(hash[0]);
        }
        let (seq, level) = row_of(index);
        let blob: Option<Vec<u8>> = self
            .conn
            .query_opt(
                "SELECT hashes FROM records WHERE tenant = ?1 AND tseq = ?2",
                &[self.tenant.into(), seq.into()],
                |row| row.get(0),
            )
            .map_err(|e| tlog::Error::InvalidInput(format!("database: {e}")))?;
        hash_in_row(blob.as_deref(), level)
    }
}

/// The `tseq` of the row that stores hash `index`, and the hash's place in its `hashes`.
fn row_of(index: u64) -> (u64, usize) {
    let (level, k) = tlog::split_stored_hash_index(index);
    (((k + 1) << level) - 1, usize::from(level))
}

fn hash_in_row(blob: Option<&[u8]>, level: usize) -> Result<Hash, tlog::Error> {
    blob.and_then(split_hashes)
        .and_then(|hashes| hashes.get(level).copied())
        .ok_or(tlog::Error::IndexesNotInTree)
}

/// The frontiers of several tenants' stored trees, read in one query: what a writer needs
/// after other replicas have grown those trees. Each is `(tenant, size, frontier of the
/// latest expiry)`.
pub fn read_frontiers(
    conn: &dyn Conn,
    trees: Vec<(String, u64, Option<Frontier>)>,
) -> anyhow::Result<Vec<(String, Frontier)>> {
    // The rows holding each frontier's hashes that no expiry note keeps.
    let mut wanted = Vec::new();
    for (tenant, size, expired) in &trees {
        for index in tlog::sub_tree_index(0, *size, Vec::new()) {
            if expired
                .as_ref()
                .is_none_or(|f| f.read_hashes(&[index]).is_err())
            {
                wanted.push((tenant.as_str(), row_of(index).0));
            }
        }
    }
    let rows = fetch_rows(conn, &wanted)?;
    trees
        .into_iter()
        .map(|(tenant, size, expired)| {
            let reader = FetchedTree {
                tenant: &tenant,
                expired: expired.as_ref(),
                rows: &rows,
            };
            let frontier = Frontier::read(size, &reader)
                .with_context(|| format!("cannot read the tree of {tenant:?} (size {size})"))?;
            Ok((tenant, frontier))
        })
        .collect()
}

/// Brings several tenants' frontiers up to the trees other writers have grown a little: the
/// records each gained (`frontier.size()` up to the stored `size`) read in one query, and
/// appended with [`Frontier::append_checked`], so that hashes which do not extend the
/// frontier are an error. Each is `(tenant, frontier, stored size)`.
pub fn catch_up(
    conn: &dyn Conn,
    trees: Vec<(String, Frontier, u64)>,
) -> anyhow::Result<Vec<(String, Frontier)>> {
    let wanted: Vec<(&str, u64)> = trees
        .iter()
        .flat_map(|(tenant, frontier, size)| {
            (frontier.size()..*size).map(|tseq| (tenant.as_str(), tseq))
        })
        .collect();
    let mut rows = fetch_rows(conn, &wanted)?;
    trees
        .into_iter()
        .map(|(tenant, mut frontier, size)| {
            for tseq in frontier.size()..size {
                let stored = rows
                    .remove(&(tenant.clone(), tseq))
                    .with_context(|| format!("record {tseq} of {tenant:?} is missing"))?;
                let leaf = stored
                    .get(..HASH_SIZE)
                    .and_then(|h| h.try_into().ok())
                    .map(Hash);
                anyhow::ensure!(
                    leaf.is_some_and(|leaf| frontier.append_checked(leaf, &stored).is_ok()),
                    "record {tseq} of {tenant:?} does not extend its tree of {tseq} records"
                );
            }
            Ok((tenant, frontier))
        })
        .collect()
}

/// The `hashes` of the records `wanted` (tenant, tseq), in one query of point lookups.
fn fetch_rows(
    conn: &dyn Conn,
    wanted: &[(&str, u64)],
) -> anyhow::Result<HashMap<(String, u64), Vec<u8>>> {
    let mut rows = HashMap::new();
    if !wanted.is_empty() {
        let sql = match conn.backend() {
            Backend::Sqlite => {
                "SELECT r.tenant, r.tseq, r.hashes FROM json_each(?1) AS list
                 JOIN records r ON r.tenant = json_extract(list.value, '$[0]')
                 AND r.tseq = json_extract(list.value, '$[1]')"
            }
            Backend::Postgres => {
                "SELECT r.tenant, r.tseq, r.hashes
                 FROM jsonb_array_elements(CAST(?1 AS TEXT)::jsonb) AS list(value)
                 JOIN records r ON r.tenant = list.value ->> 0
                 AND r.tseq = (list.value ->> 1)::bigint"
            }
        };
        conn.for_each(sql, &[serde_json::to_string(&wanted)?.into()], &mut |row| {
            rows.insert((row.get(0)?, row.u64(1)?), row.get(2)?);
            Ok(())
        })?;
    }
    Ok(rows)
}

/// One tenant's hashes among the rows [`read_frontiers`] fetched.
struct FetchedTree<'a> {
    tenant: &'a str,
    expired: Option<&'a Frontier>,
    rows: &'a HashMap<(String, u64), Vec<u8>>,
}

impl HashReader for FetchedTree<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes
            .iter()
            .map(|&index| {
                if let Some(hash) = self.expired.and_then(|f| f.read_hashes(&[index]).ok()) {
                    return Ok(hash[0]);
                }
                let (seq, level) = row_of(index);
                let row = self.rows.get(&(self.tenant.to_owned(), seq));
                hash_in_row(row.map(Vec::as_slice), level)
            })
            .collect()
    }
}

impl HashReader for StoredTree<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
        indexes.iter().map(|&i| self.read_one(i)).collect()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn hex(s: &str) -> Hash {
        let bytes: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        Hash(bytes.try_into().unwrap())
    }

    /// The RFC 6962 test leaves of the Certificate Transparency implementations.
    const LEAVES: [&[u8]; 8] = [
        b"",
        b"\x00",
        b"\x10",
        b"\x20\x21",
        b"\x30\x31",
        b"\x40\x41\x42\x43",
        b"\x50\x51\x52\x53\x54\x55\x56\x57",
        b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
    ];

    /// Their roots for tree sizes 0 to 8.
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Every stored hash of a tree, by stored index, as the `hashes` columns hold them.
    #[derive(Default)]
    pub(crate) struct Memory {
        pub frontier: Frontier,
        pub stored: Vec<Hash>,
    }

    impl Memory {
        pub fn append(&mut self, data: &[u8]) {
            let hashes = self.frontier.next_hashes(leaf_hash(data)).unwrap();
            self.frontier.push(&hashes);
            self.stored.extend(hashes);
        }
    }

    impl HashReader for Memory {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
            Ok(indexes.iter().map(|&i| self.stored[i as usize]).collect())
        }
    }

    #[test]
    fn roots_match_the_rfc6962_test_vectors() {
        let mut tree = Memory::default();
        assert_eq!(tree.frontier.root(), hex(ROOTS[0]));
        for (size, leaf) in LEAVES.iter().enumerate() {
            tree.append(leaf);
            assert_eq!(
                tree.frontier.root(),
                hex(ROOTS[size + 1]),
                "size {}",
                size + 1
            );
            let reread = Frontier::read(size as u64 + 1, &tree).unwrap();
            assert_eq!(reread, tree.frontier);
        }
        // Interior nodes of the vectors: level 1 node 3 and level 2 node 1.
        let node = |level, k| {
            tree.read_hashes(&[tlog::stored_hash_index(level, k)])
                .unwrap()[0]
        };
        assert_eq!(
            node(1, 3),
            hex("ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0")
        );
        assert_eq!(
            node(2, 1),
            hex("6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4")
        );
    }

    #[test]
    fn inclusion_and_consistency_proofs_verify_and_catch_changes() {
        let mut tree = Memory::default();
        let data: Vec<Vec<u8>> = (0..37u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let mut roots = vec![tlog::EMPTY_HASH];
        for d in &data {
            tree.append(d);
            roots.push(tree.frontier.root());
        }
        for size in 1..=37u64 {
            let root = roots[size as usize];
            for seq in 0..size {
                let proof = tlog::prove_record(size, seq, &tree).unwrap();
                let leaf = leaf_hash(&data[seq as usize]);
                assert!(tlog::check_record(&proof, size, root, seq, leaf).is_ok());
                let other = leaf_hash(b"altered");
                assert!(tlog::check_record(&proof, size, root, seq, other).is_err());
            }
            for old in 1..=size {
                let proof = tlog::prove_tree(size, old, &tree).unwrap();
                let old_root = roots[old as usize];
                assert!(tlog::check_tree(&proof, size, root, old, old_root).is_ok());
                if old < size {
                    let wrong = roots[old as usize + 1];
                    assert!(tlog::check_tree(&proof, size, root, old, wrong).is_err());
                }
            }
        }
    }

    #[test]
    fn the_expired_frontier_stands_in_for_removed_leaves() {
        let mut tree = Memory::default();
        for i in 0..20u32 {
            tree.append(&i.to_be_bytes());
        }
        let size = 20;
        let root = tree.frontier.root();
        for cut in 1..size {
            let frontier = Frontier::read(cut, &tree).unwrap();
            let kept = Frontier::from_hashes(cut, &frontier.hashes()).unwrap();
            // Only the hashes stored with leaves >= cut, and the frontier at the cut.
            let first_kept = tlog::stored_hash_index(0, cut);
            let reader = Pruned {
                frontier: kept,
                tree: &tree,
                first_kept,
            };
            for seq in cut..size {
                let proof = tlog::prove_record(size, seq, &reader).unwrap();
                let leaf = leaf_hash(&(seq as u32).to_be_bytes());
                assert!(tlog::check_record(&proof, size, root, seq, leaf).is_ok());
            }
            for old in cut..=size {
                assert!(tlog::prove_tree(size, old, &reader).is_ok(), "{cut} {old}");
            }
        }
        assert!(Frontier::from_hashes(5, &[tlog::EMPTY_HASH]).is_none());
    }

    struct Pruned<'a> {
        frontier: Frontier,
        tree: &'a Memory,
        first_kept: u64,
    }

    impl HashReader for Pruned<'_> {
        fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog::Error> {
            indexes
                .iter()
                .map(|&i| match self.frontier.read_hashes(&[i]) {
                    Ok(h) => Ok(h[0]),
                    Err(_) if i >= self.first_kept => Ok(self.tree.stored[i as usize]),
                    Err(e) => Err(e),
                })
                .collect()
        }
    }

    #[test]
    fn catching_up_appends_only_records_that_extend_the_frontier() {
        use crate::store::records::{self, NewRecord};
        let test = crate::store::testing::TestDatabase::sqlite();
        let conn = test.database.write().unwrap();
        let mut frontier = Frontier::default();
        let mut frontiers = vec![frontier.clone()];
        for k in 0..6u32 {
            let hashes = frontier.next_hashes(leaf_hash(&k.to_be_bytes())).unwrap();
            let mut stored = join_hashes(&hashes);
            if k == 5 {
                // Record 5 completes a subtree of two: the hash of that subtree is altered.
                stored[HASH_SIZE + 8] ^= 1;
            }
            let mut value = records::tests::sample(&format!("r{k}"), "2026-03-15T10:00:00.000Z");
            value["tenantId"] = "t".into();
            let record = NewRecord::new(serde_json::from_value(value).unwrap(), 0).unwrap();
            records::insert(&*conn, &record, k.into(), &stored).unwrap();
            frontier.push(&hashes);
            frontiers.push(frontier.clone());
        }
        let caught_up = |tenant: &str, from: usize, size: u64| {
            catch_up(&*conn, vec![(tenant.into(), frontiers[from].clone(), size)])
                .map(|mut trees| trees.remove(0).1)
        };
        for from in 0..5 {
            assert_eq!(caught_up("t", from, 5).unwrap(), frontiers[5]);
        }
        let altered = caught_up("t", 1, 6).unwrap_err().to_string();
        assert!(altered.contains("record 5 of \"t\""), "{altered}");
        let missing = caught_up("u", 0, 2).unwrap_err().to_string();
        assert!(
            missing.contains("record 0 of \"u\" is missing"),
            "{missing}"
        );
    }

    #[test]
    fn append_checked_agrees_with_next_hashes() {
        let mut checked = Frontier::default();
        let mut reference = Frontier::default();
        for i in 0..300u32 {
            let leaf = leaf_hash(&i.to_be_bytes());
            let hashes = reference.next_hashes(leaf).unwrap();
            let stored = join_hashes(&hashes);
            // Every altered byte, a missing or an extra hash, is caught and changes nothing.
            let before = checked.clone();
            for at in [0, 31, 32, stored.len() - 1] {
                if at >= stored.len() {
                    continue;
                }
                let mut altered = stored.clone();
                altered[at] ^= 1;
                let expected = if at < HASH_SIZE {
                    Mismatch::Leaf
                } else {
                    Mismatch::Tree
                };
                let got = checked.append_checked(leaf, &altered);
                assert_eq!(got, Err(expected), "{i} {at}");
            }
            let mut longer = stored.clone();
            longer.extend_from_slice(&[0; HASH_SIZE]);
            assert_eq!(checked.append_checked(leaf, &longer), Err(Mismatch::Tree));
            assert_eq!(
                checked.append_checked(leaf, &stored[..stored.len() - 1]),
                Err(Mismatch::Leaf)
            );
            assert_eq!(checked.append_checked(leaf, &[]), Err(Mismatch::Leaf));
            assert_eq!(checked, before);
            checked.append_checked(leaf, &stored).unwrap();
            reference.push(&hashes);
            assert_eq!(checked, reference);
        }
        assert_eq!(checked.root(), reference.root());
    }

    #[test]
    fn hashes_columns_split_into_whole_hashes() {
        let hashes = vec![leaf_hash(b"a"), leaf_hash(b"b")];
        assert_eq!(split_hashes(&join_hashes(&hashes)), Some(hashes));
        assert_eq!(split_hashes(&[0; 33]), None);
        assert_eq!(split_hashes(&[]), None);
    }
}
