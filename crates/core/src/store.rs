//! Where the state lives: a small read-only table interface ([`Store`])
//! that the state machine computes against, and the [`Overlay`] of changes
//! a command makes on top of it.
//!
//! The state machine never writes to its backing store: applying a command
//! reads through the overlay (its own earlier changes first, then the
//! store) and records puts and deletes in it. The owner of the store takes
//! the changes out ([`crate::State::take_changes`]) and writes them, in
//! the RocksDB store as one atomic batch with the applied log position.
//! [`MemStore`] is the in-memory store for tests and tools.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

/// The tables of the replicated state. Each is a sorted map of bytes to
/// bytes; key layouts are in `docs/storage.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Scalars: the revision clock, compaction, counters, auth, alarms.
    Meta,
    /// ZooKeeper: path -> node (data, ACL, stat).
    Node,
    /// ZooKeeper: parent path, 0x00, child name -> empty.
    Child,
    /// ZooKeeper: paths of containers and TTL nodes (for the reaper).
    Reap,
    /// Lease id (big-endian) -> lease (TTL, session).
    Lease,
    /// Lease id, b'k' or b'e', attached key or ephemeral path -> empty.
    LeaseItem,
    /// etcd: live key -> its latest version's metadata.
    KvLatest,
    /// etcd: escaped key, main revision -> sub revision and tombstone flag.
    KvIndex,
    /// etcd: main revision, sub revision -> key and version (the values).
    KvRev,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 9] = [
        Table::Meta,
        Table::Node,
        Table::Child,
        Table::Reap,
        Table::Lease,
        Table::LeaseItem,
        Table::KvLatest,
        Table::KvIndex,
        Table::KvRev,
    ];

    /// The table's name (the RocksDB column family).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "s_meta",
            Table::Node => "s_node",
            Table::Child => "s_child",
            Table::Reap => "s_reap",
            Table::Lease => "s_lease",
            Table::LeaseItem => "s_lease_item",
            Table::KvLatest => "s_kv_latest",
            Table::KvIndex => "s_kv_index",
            Table::KvRev => "s_kv_rev",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A callback given each row of a scan; returns false to stop.
pub type Visit<'a> = dyn FnMut(&[u8], &[u8]) -> bool + 'a;

/// A read view of the tables. Implementations must give a consistent
/// view for as long as the state machine reads it between changes.
pub trait Store: Send + Sync {
    fn get(&self, t: Table, key: &[u8]) -> Option<Vec<u8>>;
    /// Visit the rows with `start <= key < end` (no end: to the table's
    /// end) in key order, or in reverse order when `reverse`.
    fn scan(&self, t: Table, start: &[u8], end: Option<&[u8]>, reverse: bool, f: &mut Visit<'_>);
}

/// One change to a table: `None` deletes the row.
pub type Change = (Table, Vec<u8>, Option<Vec<u8>>);

/// The in-memory store: tests, property tests and offline tools.
#[derive(Default)]
pub struct MemStore {
    tables: RwLock<[BTreeMap<Vec<u8>, Vec<u8>>; 9]>,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    /// A copy of every table.
    pub fn copy(&self) -> MemStore {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        MemStore {
            tables: RwLock::new(tables.clone()),
        }
    }

    /// Write changes taken from a state machine.
    pub fn write(&self, changes: Vec<Change>) {
        let mut tables = self.tables.write().unwrap_or_else(|p| p.into_inner());
        for (t, k, v) in changes {
            match v {
                Some(v) => tables[t.index()].insert(k, v),
                None => tables[t.index()].remove(&k),
            };
        }
    }
}

fn range_bounds<'a>(start: &'a [u8], end: Option<&'a [u8]>) -> (Bound<&'a [u8]>, Bound<&'a [u8]>) {
    (
        Bound::Included(start),
        end.map_or(Bound::Unbounded, Bound::Excluded),
    )
}

fn empty_range(start: &[u8], end: Option<&[u8]>) -> bool {
    end.is_some_and(|e| e <= start)
}

impl Store for MemStore {
    fn get(&self, t: Table, key: &[u8]) -> Option<Vec<u8>> {
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        tables[t.index()].get(key).cloned()
    }

    fn scan(&self, t: Table, start: &[u8], end: Option<&[u8]>, reverse: bool, f: &mut Visit<'_>) {
        if empty_range(start, end) {
            return;
        }
        let tables = self.tables.read().unwrap_or_else(|p| p.into_inner());
        let r = tables[t.index()].range::<[u8], _>(range_bounds(start, end));
        if reverse {
            for (k, v) in r.rev() {
                if !f(k, v) {
                    return;
                }
            }
        } else {
            for (k, v) in r {
                if !f(k, v) {
                    return;
                }
            }
        }
    }
}

/// Changes not yet written, over a base store; reads see the changes
/// first. Keeps an undo log so a failed transaction can be rolled back to
/// a savepoint.
pub struct Overlay {
    base: Arc<dyn Store>,
    tables: [BTreeMap<Vec<u8>, Option<Vec<u8>>>; 9],
    /// (table, key, the overlay's entry before the change).
    undo: Vec<(Table, Vec<u8>, Option<Option<Vec<u8>>>)>,
}

impl Overlay {
    pub fn new(base: Arc<dyn Store>) -> Overlay {
        Overlay {
            base,
            tables: Default::default(),
            undo: Vec::new(),
        }
    }

    pub fn base(&self) -> &Arc<dyn Store> {
        &self.base
    }

    pub fn get(&self, t: Table, key: &[u8]) -> Option<Vec<u8>> {
        match self.tables[t.index()].get(key) {
            Some(v) => v.clone(),
            None => self.base.get(t, key),
        }
    }

    pub fn contains(&self, t: Table, key: &[u8]) -> bool {
        self.get(t, key).is_some()
    }

    pub fn put(&mut self, t: Table, key: Vec<u8>, value: Vec<u8>) {
        let old = self.tables[t.index()].insert(key.clone(), Some(value));
        self.undo.push((t, key, old));
    }

    pub fn delete(&mut self, t: Table, key: &[u8]) {
        let old = self.tables[t.index()].insert(key.to_vec(), None);
        self.undo.push((t, key.to_vec(), old));
    }

    /// A point to roll back to.
    pub fn savepoint(&self) -> usize {
        self.undo.len()
    }

    /// Undo every change made since `sp`.
    pub fn rollback(&mut self, sp: usize) {
        while self.undo.len() > sp {
            let Some((t, k, old)) = self.undo.pop() else {
                break;
            };
            match old {
                Some(v) => self.tables[t.index()].insert(k, v),
                None => self.tables[t.index()].remove(&k),
            };
        }
    }

    /// Forget the undo log (the changes stay).
    pub fn release(&mut self) {
        self.undo.clear();
    }

    /// Take every pending change, leaving the overlay empty.
    pub fn take(&mut self) -> Vec<Change> {
        self.undo.clear();
        let mut out = Vec::new();
        for t in Table::ALL {
            for (k, v) in std::mem::take(&mut self.tables[t.index()]) {
                out.push((t, k, v));
            }
        }
        out
    }

    /// Visit rows of the merged view (changes over the base) in order.
    pub fn scan(
        &self,
        t: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        f: &mut Visit<'_>,
    ) {
        if empty_range(start, end) {
            return;
        }
        let ov = &self.tables[t.index()];
        let mut pending: Box<dyn Iterator<Item = (&Vec<u8>, &Option<Vec<u8>>)>> = if reverse {
            Box::new(ov.range::<[u8], _>(range_bounds(start, end)).rev())
        } else {
            Box::new(ov.range::<[u8], _>(range_bounds(start, end)))
        };
        let mut next = pending.next();
        // Rows of the overlay that sort before `k` (after, in reverse) go
        // first; a row the overlay has replaces the base's.
        let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
        let mut go = true;
        self.base.scan(t, start, end, reverse, &mut |k, v| {
            while let Some((ok, ov)) = next {
                if before(ok, k) {
                    if let Some(ov) = ov {
                        if !f(ok, ov) {
                            go = false;
                            return false;
                        }
                    }
                    next = pending.next();
                } else {
                    break;
                }
            }
            if let Some((ok, ov)) = next {
                if ok.as_slice() == k {
                    next = pending.next();
                    if let Some(ov) = ov {
                        if !f(ok, ov) {
                            go = false;
                            return false;
                        }
                    }
                    return true;
                }
            }
            if !f(k, v) {
                go = false;
                return false;
            }
            true
        });
        if !go {
            return;
        }
        while let Some((ok, ov)) = next {
            if let Some(ov) = ov {
                if !f(ok, ov) {
                    return;
                }
            }
            next = pending.next();
        }
    }

    /// The rows of a scan, collected (at most `limit`).
    pub fn collect(
        &self,
        t: Table,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        if limit == 0 {
            return out;
        }
        self.scan(t, start, end, false, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            out.len() < limit
        });
        out
    }
}

/// The key just after every key that starts with `prefix` (None: no such
/// key, the prefix is all 0xFF).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xFF {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// Escape `key` so that escaped keys sort as the keys do and none is a
/// prefix of another: 0x00 becomes 0x00 0xFF, and 0x00 0x01 ends it.
pub fn escape_key(key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 2);
    for &b in key {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 1]);
    out
}

/// The inverse of [`escape_key`] for a prefix of `buf`; returns the key
/// and the bytes after its terminator.
pub fn unescape_key(buf: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::with_capacity(buf.len());
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        if b == 0 {
            match buf.get(i + 1) {
                Some(0xFF) => {
                    out.push(0);
                    i += 2;
                }
                Some(1) => return Some((out, &buf[i + 2..])),
                _ => return None,
            }
        } else {
            out.push(b);
            i += 1;
        }
    }
    None
}

/// Escape the start of a key range: every escaped key >= `key` sorts at
/// or after this (no terminator, so `key` itself is included).
pub fn escape_bound(key: &[u8]) -> Vec<u8> {
    let mut e = escape_key(key);
    e.truncate(e.len() - 2);
    e
}

pub fn read_be_i64(b: &[u8]) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(..8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_keys_sort_as_keys_and_round_trip() {
        let keys: Vec<&[u8]> = vec![
            b"", b"\0", b"\0\0", b"\0\x01", b"a", b"a\0", b"a\0b", b"ab", b"\xff",
        ];
        for w in keys.windows(2) {
            assert!(escape_key(w[0]) < escape_key(w[1]), "{w:?}");
        }
        for k in &keys {
            let mut e = escape_key(k);
            e.extend_from_slice(b"tail");
            assert_eq!(unescape_key(&e), Some((k.to_vec(), &b"tail"[..])));
            assert!(escape_bound(k) <= escape_key(k));
        }
    }

    #[test]
    fn overlay_merges_and_rolls_back() {
        let base = Arc::new(MemStore::new());
        base.write(vec![
            (Table::Node, b"a".to_vec(), Some(b"1".to_vec())),
            (Table::Node, b"c".to_vec(), Some(b"3".to_vec())),
            (Table::Node, b"e".to_vec(), Some(b"5".to_vec())),
        ]);
        let mut o = Overlay::new(base);
        o.put(Table::Node, b"b".to_vec(), b"2".to_vec());
        let sp = o.savepoint();
        o.delete(Table::Node, b"c");
        o.put(Table::Node, b"f".to_vec(), b"6".to_vec());
        let rows = |o: &Overlay, rev: bool| {
            let mut v = Vec::new();
            o.scan(Table::Node, b"", None, rev, &mut |k, _| {
                v.push(k[0]);
                true
            });
            v
        };
        assert_eq!(rows(&o, false), b"abef".to_vec());
        assert_eq!(rows(&o, true), b"feba".to_vec());
        o.rollback(sp);
        assert_eq!(rows(&o, false), b"abce".to_vec());
        assert_eq!(o.collect(Table::Node, b"b", Some(b"e"), 10).len(), 2);
        assert_eq!(o.take().len(), 1);
    }
}
