//! The state database: the replicated state's tables as RocksDB column
//! families, behind `janus_core::Store`.

use std::path::Path;
use std::sync::Arc;

use janus_core::store::Visit;
use janus_core::{Store, Table};
use rocksdb::{
    BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBRawIteratorWithThreadMode, Options,
    ReadOptions, DB,
};

/// The column family of the Raft position (applied log id, membership)
/// written with every applied batch.
pub(crate) const CF_RAFT: &str = "raft";

/// Memory RocksDB may use for the state: cached blocks, and write buffers
/// across all column families. The data itself stays on disk.
const BLOCK_CACHE_BYTES: usize = 64 << 20;
const WRITE_BUFFERS_BYTES: usize = 128 << 20;

/// The state database. Reads are served by RocksDB (its block cache and
/// memtables); nothing of the data set is held otherwise.
pub struct StateDb {
    pub(crate) db: DB,
}

fn cf_options(cache: &Cache, point_lookups: bool) -> Options {
    let mut o = Options::default();
    let mut b = BlockBasedOptions::default();
    b.set_block_cache(cache);
    if point_lookups {
        b.set_bloom_filter(10.0, false);
    }
    b.set_cache_index_and_filter_blocks(true);
    o.set_block_based_table_factory(&b);
    // Every level compressed: uncompressed upper levels (tried) wrote
    // several times the bytes and slowed the log's fsyncs on a shared disk.
    o.set_compression_type(rocksdb::DBCompressionType::Lz4);
    o.set_write_buffer_size(32 << 20);
    // A flush (a checkpoint starts one in every column family) must not
    // stop writes: room for more memtables while it runs, and no slowdown
    // for the level-0 files a bulk load leaves until compaction catches up.
    o.set_max_write_buffer_number(4);
    o.set_level_zero_slowdown_writes_trigger(40);
    o.set_level_zero_stop_writes_trigger(64);
    o
}

impl StateDb {
    /// Open (or create) the state database in `dir`.
    pub fn open(dir: &Path) -> Result<StateDb, rocksdb::Error> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        // Every applied batch spans column families: keep them flushed
        // together so a crash never leaves one ahead of the others.
        opts.set_atomic_flush(true);
        opts.set_db_write_buffer_size(WRITE_BUFFERS_BYTES);
        opts.set_max_background_jobs(2);
        opts.set_keep_log_file_num(4);
        let cache = Cache::new_lru_cache(BLOCK_CACHE_BYTES);
        let mut cfs: Vec<ColumnFamilyDescriptor> = Table::ALL
            .iter()
            .map(|t| {
                let point = matches!(
                    t,
                    Table::Node
                        | Table::KvLatest
                        | Table::KvIndex
                        | Table::KvRev
                        | Table::Lease
                        | Table::Meta
                );
                ColumnFamilyDescriptor::new(t.name(), cf_options(&cache, point))
            })
            .collect();
        cfs.push(ColumnFamilyDescriptor::new(
            CF_RAFT,
            cf_options(&cache, false),
        ));
        let db = DB::open_cf_descriptors(&opts, dir, cfs)?;
        Ok(StateDb { db })
    }

    /// Open a checkpoint read-only (to read its Raft position).
    pub fn open_read_only(dir: &Path) -> Result<StateDb, rocksdb::Error> {
        let opts = Options::default();
        let mut names: Vec<&str> = Table::ALL.iter().map(|t| t.name()).collect();
        names.push(CF_RAFT);
        let db = DB::open_cf_for_read_only(&opts, dir, names, false)?;
        Ok(StateDb { db })
    }

    pub(crate) fn cf(&self, name: &str) -> Option<&rocksdb::ColumnFamily> {
        self.db.cf_handle(name)
    }

    fn scan_raw(
        &self,
        t: Table,
        start: &[u8],
        end: Option<&[u8]>,
        reverse: bool,
        f: &mut Visit<'_>,
    ) -> Result<(), rocksdb::Error> {
        let Some(cf) = self.cf(t.name()) else {
            return Ok(());
        };
        let mut ro = ReadOptions::default();
        ro.set_iterate_lower_bound(start.to_vec());
        if let Some(e) = end {
            ro.set_iterate_upper_bound(e.to_vec());
        }
        let mut it: DBRawIteratorWithThreadMode<DB> = self.db.raw_iterator_cf_opt(cf, ro);
        if reverse {
            it.seek_to_last();
        } else {
            it.seek(start);
        }
        while it.valid() {
            let (Some(k), Some(v)) = (it.key(), it.value()) else {
                break;
            };
            if !f(k, v) {
                return Ok(());
            }
            if reverse {
                it.prev();
            } else {
                it.next();
            }
        }
        it.status()
    }
}

impl Store for StateDb {
    fn get(&self, t: Table, key: &[u8]) -> Option<Vec<u8>> {
        let cf = self.cf(t.name())?;
        match self.db.get_cf(cf, key) {
            Ok(v) => v,
            Err(e) => {
                // The state machine cannot go on without its data: a read
                // error of the disk is not an answer to give a client.
                tracing::error!(error = %e, table = t.name(), "state read failed");
                std::process::abort();
            }
        }
    }

    fn scan(&self, t: Table, start: &[u8], end: Option<&[u8]>, reverse: bool, f: &mut Visit<'_>) {
        if end.is_some_and(|e| e <= start) {
            return;
        }
        if let Err(e) = self.scan_raw(t, start, end, reverse, f) {
            tracing::error!(error = %e, table = t.name(), "state scan failed");
            std::process::abort();
        }
    }
}

/// Shared handle to the state database.
pub type SharedDb = Arc<StateDb>;
