//! The same random command sequences through the in-memory store and the
//! RocksDB state database give the same answers, events and states.

use std::sync::Arc;

use janus_core::testing::{materialize, steps, BALANCED, ZK_HEAVY};
use janus_core::{Change, State};
use proptest::prelude::*;
use proptest::test_runner::Config;
use rocksdb::WriteBatch;

use crate::db::StateDb;
use crate::sm::put_changes;

fn write(db: &StateDb, changes: Vec<Change>) {
    let mut b = WriteBatch::default();
    put_changes(db, &mut b, changes).expect("column families");
    db.db.write(b).expect("write");
}

fn run(proposals: &[janus_core::Proposal], flush_every: usize) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = Arc::new(StateDb::open(dir.path()).expect("open"));
    let mut disk = State::open(db.clone()).expect("state");
    write(&db, disk.take_changes());
    let mut mem = State::new();
    for (i, p) in proposals.iter().enumerate() {
        let a = mem.apply(p);
        let b = disk.apply(p);
        prop_assert_eq!(&a, &b, "step {}: {:?}", i, p.command);
        // Batches of several commands: later ones read earlier ones'
        // changes through the overlay, the rest from RocksDB.
        if i % flush_every == 0 {
            write(&db, disk.take_changes());
        }
    }
    prop_assert_eq!(mem.dump(), disk.dump(), "pending changes");
    write(&db, disk.take_changes());
    prop_assert_eq!(mem.digest(), disk.digest());
    let reopened = State::open(db.clone()).expect("reopen");
    prop_assert_eq!(mem.dump(), reopened.dump(), "reopened");
    prop_assert_eq!(reopened.check_invariants(), Ok(()));
    Ok(())
}

fn config() -> Config {
    Config {
        cases: 48,
        failure_persistence: None,
        ..Config::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn rocksdb_and_memory_agree(steps in steps(BALANCED), every in 1usize..6) {
        run(&materialize(&steps), every)?;
    }

    #[test]
    fn rocksdb_and_memory_agree_zk_heavy(steps in steps(ZK_HEAVY), every in 1usize..6) {
        run(&materialize(&steps), every)?;
    }
}
