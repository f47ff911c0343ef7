//! Backups: a member's whole replicated state in one file, and a new
//! cluster's data dir made from one.
//!
//! A backup is `JANUSBK1`, the data format (u32, big-endian), then a pack
//! of a checkpoint of the state database (the same pack a member sends a
//! lagging one), zero-padded to a multiple of 512 bytes and followed by the
//! SHA-256 of everything before it. The padding and the trailing hash give
//! it the shape of etcd's snapshot files: `etcdctl snapshot save` against
//! Janus stores exactly this file, and etcd's own integrity check (size a
//! multiple of 512 plus 32, hash at the end) holds for it.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use janus_core::{State, Store, Table};
use openraft::{CommittedLeaderId, LogId, Membership, StoredMembership};
use rocksdb::checkpoint::Checkpoint;
use rocksdb::{WriteBatch, WriteOptions};
use sha2::{Digest, Sha256};

use crate::db::{StateDb, CF_RAFT};
use crate::sm::{put_changes, read_position, state_dir, zk_config_servers, RaftPosition, KEY_RAFT};
use crate::snapshot::{sync_dir, unpack, PackReader};
use crate::{Member, NodeId, FORMAT_VERSION};

const MAGIC: &[u8; 8] = b"JANUSBK1";
const HEAD_LEN: u64 = 12;
const HASH_LEN: u64 = 32;
/// etcd's snapshot files are whole bbolt pages; etcdctl expects the
/// data to be a multiple of 512 bytes.
const BLOCK: u64 = 512;

/// Why a backup could not be taken, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0}")]
    Io(String),
    #[error("not a Janus backup: {0}")]
    NotABackup(String),
    #[error("backup has data format {found}; this build reads format {FORMAT_VERSION}")]
    Format { found: u32 },
    #[error("SHA-256 mismatch: the backup is damaged (expected {expected}, found {found})")]
    Hash { expected: String, found: String },
    #[error("data dir {0} exists; restore makes a new one")]
    Exists(PathBuf),
    #[error("the backup's state is unreadable: {0}")]
    State(String),
}

fn io(e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(e.to_string())
}

/// A backup being read out: the bytes of the file before its trailing
/// hash (the caller hashes what it sends and appends the hash).
pub struct Backup {
    head: std::io::Cursor<Vec<u8>>,
    pack: PackReader,
    padding: u64,
    len: u64,
    revision: i64,
}

impl Backup {
    /// The bytes to read before the hash: a multiple of 512.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Always false: a backup holds at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The revision (also the last zxid) the backup holds the state at.
    pub fn revision(&self) -> i64 {
        self.revision
    }
}

impl Read for Backup {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.head.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let n = self.pack.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        let n = buf
            .len()
            .min(usize::try_from(self.padding).unwrap_or(usize::MAX));
        buf[..n].fill(0);
        self.padding -= n as u64;
        Ok(n)
    }
}

/// Checkpoint `db` into `<dir>/backups/<seq>`, open its files and remove
/// the directory: the backup reads the files through its handles, however
/// long the transfer takes, and nothing is left behind.
pub(crate) fn take(db: &StateDb, dir: &Path, seq: u64) -> Result<Backup, BackupError> {
    let root = backups_dir(dir);
    fs::create_dir_all(&root).map_err(io)?;
    let ckpt = root.join(seq.to_string());
    if ckpt.exists() {
        fs::remove_dir_all(&ckpt).map_err(io)?;
    }
    Checkpoint::new(&db.db)
        .and_then(|c| c.create_checkpoint(&ckpt))
        .map_err(io)?;
    let opened = (|| {
        let revision = {
            let ro = Arc::new(StateDb::open_read_only(&ckpt).map_err(io)?);
            State::open(ro)
                .map_err(|e| BackupError::State(e.to_string()))?
                .revision()
        };
        let pack = PackReader::open(&ckpt).map_err(BackupError::Io)?;
        Ok((revision, pack))
    })();
    fs::remove_dir_all(&ckpt).map_err(io)?;
    let (revision, pack) = opened?;
    let mut head = MAGIC.to_vec();
    head.extend_from_slice(&FORMAT_VERSION.to_be_bytes());
    let data = HEAD_LEN + pack.len();
    let len = data.div_ceil(BLOCK) * BLOCK;
    Ok(Backup {
        head: std::io::Cursor::new(head),
        pack,
        padding: len - data,
        len,
        revision,
    })
}

/// Where backups are checkpointed for the moment it takes to open them.
pub(crate) fn backups_dir(dir: &Path) -> PathBuf {
    dir.join("backups")
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupInfo {
    /// The data format it is written in.
    pub format: u32,
    /// The revision (also the last zxid) of the state it holds.
    pub revision: i64,
    /// The etcd revision compacted up to.
    pub compacted: i64,
    /// Live etcd keys.
    pub keys: u64,
    /// Znodes, the built-in ones included.
    pub znodes: u64,
    /// etcd leases.
    pub leases: u64,
    /// ZooKeeper sessions.
    pub sessions: u64,
    /// The members of the cluster it was taken from, by id and peer address.
    pub members: Vec<(NodeId, String)>,
    /// A digest of every table's rows (equal states, equal digests).
    pub digest: u64,
    /// The file's size in bytes.
    pub size: u64,
}

/// Check a backup file's shape, format and (with `check_hash`) its
/// SHA-256; returns the file positioned at the pack and the pack's length
/// (padding included).
fn open_checked(file: &Path, check_hash: bool) -> Result<(File, u64), BackupError> {
    let mut f = File::open(file).map_err(|e| io(format!("{}: {e}", file.display())))?;
    let size = f.metadata().map_err(io)?.len();
    if size < HEAD_LEN + HASH_LEN || (size - HASH_LEN) % BLOCK != 0 {
        return Err(BackupError::NotABackup(format!(
            "its size ({size} bytes) is not a multiple of {BLOCK} plus a SHA-256"
        )));
    }
    let mut head = [0u8; HEAD_LEN as usize];
    f.read_exact(&mut head).map_err(io)?;
    if &head[..8] != MAGIC {
        return Err(BackupError::NotABackup(
            "it does not start with JANUSBK1".into(),
        ));
    }
    let mut found = [0u8; 4];
    found.copy_from_slice(&head[8..]);
    let found = u32::from_be_bytes(found);
    if found != FORMAT_VERSION {
        return Err(BackupError::Format { found });
    }
    if check_hash {
        f.seek(SeekFrom::Start(0)).map_err(io)?;
        let mut h = Sha256::new();
        let mut body = BufReader::new(&mut f).take(size - HASH_LEN);
        let mut buf = vec![0u8; 1 << 16];
        loop {
            let n = body.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let mut want = [0u8; HASH_LEN as usize];
        f.seek(SeekFrom::Start(size - HASH_LEN)).map_err(io)?;
        f.read_exact(&mut want).map_err(io)?;
        let got = h.finalize();
        if got.as_slice() != want {
            return Err(BackupError::Hash {
                expected: hex(&want),
                found: hex(got.as_slice()),
            });
        }
    }
    f.seek(SeekFrom::Start(HEAD_LEN)).map_err(io)?;
    Ok((f, size - HASH_LEN - HEAD_LEN))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Unpack a backup's checkpoint into the new directory `to`.
fn unpack_into(file: &Path, to: &Path, check_hash: bool) -> Result<(), BackupError> {
    let (f, len) = open_checked(file, check_hash)?;
    fs::create_dir_all(to).map_err(io)?;
    unpack(BufReader::new(f), to, len).map_err(BackupError::NotABackup)?;
    sync_dir(to).map_err(BackupError::Io)
}

fn info_of(db: Arc<StateDb>, size: u64) -> Result<BackupInfo, BackupError> {
    let pos = read_position(&db).map_err(BackupError::State)?;
    let members = pos
        .membership
        .membership()
        .nodes()
        .map(|(id, m)| (*id, m.addr.clone()))
        .collect();
    let mut keys = 0;
    db.scan(Table::KvLatest, b"", None, false, &mut |_, _| {
        keys += 1;
        true
    });
    let state = State::open(db).map_err(|e| BackupError::State(e.to_string()))?;
    let (mut leases, mut sessions) = (0, 0);
    for l in state.leases() {
        if l.session.is_some() {
            sessions += 1;
        } else {
            leases += 1;
        }
    }
    Ok(BackupInfo {
        format: FORMAT_VERSION,
        revision: state.revision(),
        compacted: state.compacted_revision(),
        keys,
        znodes: state.zk_node_count(),
        leases,
        sessions,
        members,
        digest: state.digest(),
        size,
    })
}

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Read a backup file and say what it holds. The file is unpacked into a
/// scratch directory beside it (`scratch` overrides where).
pub fn inspect(
    file: &Path,
    check_hash: bool,
    scratch: Option<&Path>,
) -> Result<BackupInfo, BackupError> {
    let size = fs::metadata(file).map_err(io)?.len();
    let base = match scratch {
        Some(s) => s.to_path_buf(),
        // Beside the file: a backup's checkpoint is as large as the
        // data, more than a small /tmp may hold.
        None => file
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let tmp = Scratch(base.join(format!("janus-backup-{}", std::process::id())));
    if tmp.0.exists() {
        fs::remove_dir_all(&tmp.0).map_err(io)?;
    }
    unpack_into(file, &tmp.0, check_hash)?;
    let db = Arc::new(StateDb::open_read_only(&tmp.0).map_err(io)?);
    info_of(db, size)
}

/// Make `dir` (a store dir, as [`crate::open`] takes) a new cluster's
/// member holding the backup's state: the state database is the backup's,
/// its membership is `members` (all voters), the Raft log is empty and
/// starts after it. Every member of the new cluster is restored from the
/// same file. `dir` must not exist yet; it is built beside and renamed
/// into place, so a failed restore leaves nothing.
pub fn restore(
    file: &Path,
    dir: &Path,
    members: BTreeMap<NodeId, Member>,
    check_hash: bool,
) -> Result<BackupInfo, BackupError> {
    if dir.exists() {
        return Err(BackupError::Exists(dir.to_path_buf()));
    }
    if members.is_empty() {
        return Err(BackupError::Io("restore needs at least one member".into()));
    }
    let size = fs::metadata(file).map_err(io)?.len();
    let name = dir
        .file_name()
        .map_or_else(|| "db".to_string(), |n| n.to_string_lossy().into_owned());
    let building = Scratch(dir.with_file_name(format!("{name}.restoring")));
    if building.0.exists() {
        fs::remove_dir_all(&building.0).map_err(io)?;
    }
    unpack_into(file, &state_dir(&building.0), check_hash)?;
    {
        let db = Arc::new(StateDb::open(&state_dir(&building.0)).map_err(io)?);
        let old = read_position(&db).map_err(BackupError::State)?;
        let mut state = State::open(db.clone()).map_err(|e| BackupError::State(e.to_string()))?;
        // A new cluster's history starts just after the state, as after an
        // `initialize`: term 0, no leader yet.
        let log_id = LogId::new(CommittedLeaderId::new(0, 0), 1);
        let voters = members
            .keys()
            .copied()
            .collect::<std::collections::BTreeSet<_>>();
        let membership = Membership::new(vec![voters], members);
        let servers = zk_config_servers(&membership);
        let pos = RaftPosition {
            last_applied: Some(log_id),
            membership: StoredMembership::new(Some(log_id), membership),
            removed: Default::default(),
            time_ms: old.time_ms,
        };
        // `/zookeeper/config` names the new members; its zxid stays.
        state.zk_set_config(pos.time_ms, &servers, false);
        let mut batch = WriteBatch::default();
        put_changes(&db, &mut batch, state.take_changes()).map_err(BackupError::State)?;
        let cf = db
            .cf(CF_RAFT)
            .ok_or_else(|| BackupError::State("column family raft missing".into()))?;
        batch.put_cf(cf, KEY_RAFT, postcard::to_stdvec(&pos).map_err(io)?);
        let mut w = WriteOptions::default();
        w.set_sync(true);
        db.db.write_opt(batch, &w).map_err(io)?;
    }
    // The (empty) log database, stamped with the data format.
    crate::create_log_db(&building.0).map_err(io)?;
    let info = info_of(
        Arc::new(StateDb::open_read_only(&state_dir(&building.0)).map_err(io)?),
        size,
    )?;
    fs::rename(&building.0, dir).map_err(io)?;
    if let Some(parent) = dir.parent() {
        sync_dir(parent).map_err(BackupError::Io)?;
    }
    tracing::info!(
        revision = info.revision,
        keys = info.keys,
        znodes = info.znodes,
        dir = %dir.display(),
        "restored a backup"
    );
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn refuses_files_of_another_shape() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        fs::write(&p, b"short").unwrap();
        assert!(matches!(
            inspect(&p, true, Some(d.path())),
            Err(BackupError::NotABackup(_))
        ));
        // The right size, the wrong magic.
        fs::write(&p, vec![7u8; 512 + 32]).unwrap();
        assert!(matches!(
            inspect(&p, true, Some(d.path())),
            Err(BackupError::NotABackup(_))
        ));
        // The right magic, a newer format.
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&(FORMAT_VERSION + 1).to_be_bytes());
        raw.resize(512 + 32, 0);
        fs::write(&p, &raw).unwrap();
        assert!(matches!(
            inspect(&p, true, Some(d.path())),
            Err(BackupError::Format { .. })
        ));
        // A damaged one.
        raw[8..12].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
        let mut f = File::create(&p).unwrap();
        f.write_all(&raw).unwrap();
        assert!(matches!(
            inspect(&p, true, Some(d.path())),
            Err(BackupError::Hash { .. })
        ));
    }
}
