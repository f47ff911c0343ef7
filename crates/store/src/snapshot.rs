//! Snapshots as RocksDB checkpoints.
//!
//! `snapshots/<id>.ckpt/` is a checkpoint of the state database (table
//! files hard-linked, the rest copied), `<id>.meta` its Raft metadata and
//! `current` names the latest. A member that sends a snapshot packs the
//! checkpoint's files into `<id>.pack` (one stream: openraft sends it in
//! chunks); the receiver unpacks it into a checkpoint of its own and makes
//! a copy of it its state database.

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use openraft::SnapshotMeta;
use rocksdb::checkpoint::Checkpoint;

use crate::db::StateDb;
use crate::sm::{read_position, state_dir};
use crate::{Member, NodeId, OpenError};

const MAGIC: &[u8; 8] = b"JANUSCK1";
/// A file name in a pack is at most this long (RocksDB's names are short).
const MAX_NAME: usize = 255;

pub(crate) struct SnapshotDir {
    root: PathBuf,
}

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Files of a directory (no subdirectories), sorted by name.
fn files(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>, String> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(e2s)? {
        let e = e.map_err(e2s)?;
        let md = e.metadata().map_err(e2s)?;
        if md.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            out.push((name, e.path(), md.len()));
        }
    }
    out.sort();
    Ok(out)
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(e2s)
}

fn write_atomic(path: &Path, data: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(e2s)?;
        f.write_all(data).map_err(e2s)?;
        f.sync_all().map_err(e2s)?;
    }
    fs::rename(&tmp, path).map_err(e2s)?;
    if let Some(p) = path.parent() {
        sync_dir(p)?;
    }
    Ok(())
}

/// Copy the database files of `from` into the new directory `to`: table
/// files (never changed once written) as hard links, the rest (manifest,
/// logs, options, which RocksDB appends to) as copies.
fn clone_db_dir(from: &Path, to: &Path) -> Result<(), String> {
    fs::create_dir_all(to).map_err(e2s)?;
    for (name, path, _) in files(from)? {
        let dest = to.join(&name);
        if name.ends_with(".sst") && fs::hard_link(&path, &dest).is_ok() {
            continue;
        }
        fs::copy(&path, &dest).map_err(e2s)?;
    }
    sync_dir(to)
}

impl SnapshotDir {
    pub(crate) fn new(data_dir: &Path) -> SnapshotDir {
        SnapshotDir {
            root: data_dir.join("snapshots"),
        }
    }

    fn ckpt(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.ckpt"))
    }

    fn meta_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.meta"))
    }

    fn pack_path(&self, id: &str) -> PathBuf {
        self.root.join(format!("{id}.pack"))
    }

    /// Checkpoint `db` as the current snapshot; returns its metadata and
    /// size in bytes.
    pub(crate) fn checkpoint(
        &self,
        db: &StateDb,
        seq: u64,
    ) -> Result<(SnapshotMeta<NodeId, Member>, u64), String> {
        fs::create_dir_all(&self.root).map_err(e2s)?;
        let tmp = self.root.join(format!("tmp-{seq}"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(e2s)?;
        }
        Checkpoint::new(&db.db)
            .and_then(|c| c.create_checkpoint(&tmp))
            .map_err(e2s)?;
        let pos = {
            let ro = StateDb::open_read_only(&tmp).map_err(e2s)?;
            read_position(&ro)?
        };
        let id = match pos.last_applied {
            Some(l) => format!(
                "{}-{}-{}-{seq}",
                l.leader_id.term, l.leader_id.node_id, l.index
            ),
            None => format!("none-{seq}"),
        };
        let meta = SnapshotMeta {
            last_log_id: pos.last_applied,
            last_membership: pos.membership,
            snapshot_id: id.clone(),
        };
        fs::rename(&tmp, self.ckpt(&id)).map_err(e2s)?;
        self.make_current(&meta)?;
        let bytes = files(&self.ckpt(&id))?.iter().map(|f| f.2).sum();
        Ok((meta, bytes))
    }

    fn make_current(&self, meta: &SnapshotMeta<NodeId, Member>) -> Result<(), String> {
        let id = &meta.snapshot_id;
        let raw = postcard::to_stdvec(meta).map_err(e2s)?;
        write_atomic(&self.meta_path(id), &raw)?;
        write_atomic(&self.root.join("current"), id.as_bytes())?;
        // Older snapshots, packs and partial transfers go.
        for e in fs::read_dir(&self.root).map_err(e2s)? {
            let e = e.map_err(e2s)?;
            let name = e.file_name().to_string_lossy().into_owned();
            let keep = name == "current"
                || name
                    .strip_prefix(id.as_str())
                    .is_some_and(|r| r.starts_with('.'));
            if !keep {
                let p = e.path();
                let _ = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
            }
        }
        Ok(())
    }

    /// The current snapshot's metadata.
    pub(crate) fn current(&self) -> Result<Option<SnapshotMeta<NodeId, Member>>, String> {
        let id = match fs::read_to_string(self.root.join("current")) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.to_string()),
        };
        if !self.ckpt(&id).is_dir() {
            return Ok(None);
        }
        let raw = fs::read(self.meta_path(&id)).map_err(e2s)?;
        postcard::from_bytes(&raw).map(Some).map_err(e2s)
    }

    /// The snapshot's data as one stream (packed on first use).
    pub(crate) fn open_data(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
    ) -> Result<SnapshotFile, String> {
        let id = &meta.snapshot_id;
        let pack = self.pack_path(id);
        if !pack.exists() {
            let tmp = self.root.join(format!("{id}.packing"));
            let total = self.pack(&self.ckpt(id), &tmp)?;
            fs::rename(&tmp, &pack).map_err(e2s)?;
            tracing::info!(snapshot = %id, bytes = total, "packed snapshot for sending");
        }
        let f = File::open(&pack).map_err(e2s)?;
        SnapshotFile::sending(f, id)
    }

    fn pack(&self, dir: &Path, to: &Path) -> Result<u64, String> {
        let mut r = PackReader::open(dir)?;
        let total = r.len();
        let mut w = BufWriter::new(File::create(to).map_err(e2s)?);
        std::io::copy(&mut r, &mut w).map_err(e2s)?;
        let f = w.into_inner().map_err(e2s)?;
        f.sync_all().map_err(e2s)?;
        Ok(total)
    }

    /// A new file to receive a snapshot into.
    pub(crate) fn incoming(&self, seq: u64) -> Result<File, String> {
        fs::create_dir_all(&self.root).map_err(e2s)?;
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(self.root.join(format!("incoming-{seq}")))
            .map_err(e2s)
    }

    /// Unpack a received snapshot into a checkpoint and make it current;
    /// returns the checkpoint's directory.
    pub(crate) fn receive(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        mut data: File,
    ) -> Result<PathBuf, String> {
        let id = &meta.snapshot_id;
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(format!("bad snapshot id {id:?}"));
        }
        data.seek(SeekFrom::Start(0)).map_err(e2s)?;
        let total = data.metadata().map_err(e2s)?.len();
        let tmp = self.root.join(format!("{id}.unpacking"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(e2s)?;
        }
        fs::create_dir_all(&tmp).map_err(e2s)?;
        unpack(BufReader::new(data), &tmp, total)?;
        sync_dir(&tmp)?;
        let ckpt = self.ckpt(id);
        if ckpt.exists() {
            fs::remove_dir_all(&ckpt).map_err(e2s)?;
        }
        fs::rename(&tmp, &ckpt).map_err(e2s)?;
        self.make_current(meta)?;
        tracing::info!(snapshot = %id, bytes = total, "received snapshot");
        Ok(ckpt)
    }
}

/// The files of a directory as one pack stream: `JANUSCK1`, the file
/// count (u32), then per file its name (u16 length first), its size (u64)
/// and its bytes; integers big-endian. Every file is opened up front, so
/// the pack reads them even once the directory is removed.
pub(crate) struct PackReader {
    parts: std::collections::VecDeque<Part>,
    len: u64,
}

enum Part {
    Bytes(std::io::Cursor<Vec<u8>>),
    File {
        name: String,
        data: std::io::Take<File>,
        left: u64,
    },
}

impl PackReader {
    pub(crate) fn open(dir: &Path) -> Result<PackReader, String> {
        let list = files(dir)?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&(list.len() as u32).to_be_bytes());
        let mut parts = std::collections::VecDeque::new();
        let mut len = 0;
        for (name, path, size) in list {
            if name.len() > MAX_NAME {
                return Err(format!("{name}: file name too long to pack"));
            }
            head.extend_from_slice(&(name.len() as u16).to_be_bytes());
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(&size.to_be_bytes());
            len += head.len() as u64 + size;
            parts.push_back(Part::Bytes(std::io::Cursor::new(std::mem::take(&mut head))));
            let data = File::open(&path).map_err(e2s)?.take(size);
            parts.push_back(Part::File {
                name,
                data,
                left: size,
            });
        }
        if !head.is_empty() {
            len += head.len() as u64;
            parts.push_back(Part::Bytes(std::io::Cursor::new(head)));
        }
        Ok(PackReader { parts, len })
    }

    /// The pack's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

impl Read for PackReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while let Some(part) = self.parts.front_mut() {
            let n = match part {
                Part::Bytes(c) => c.read(buf)?,
                Part::File { name, data, left } => {
                    let n = data.read(buf)?;
                    *left -= n as u64;
                    if n == 0 && *left > 0 {
                        // RocksDB never shortens a file it wrote; one that
                        // did would leave the pack's sizes wrong.
                        return Err(std::io::Error::other(format!(
                            "{name}: changed while packing"
                        )));
                    }
                    n
                }
            };
            if n > 0 {
                return Ok(n);
            }
            self.parts.pop_front();
        }
        Ok(0)
    }
}

fn read_exact<R: Read>(r: &mut R, n: usize) -> Result<Vec<u8>, String> {
    let mut b = vec![0; n];
    r.read_exact(&mut b)
        .map_err(|e| format!("snapshot truncated: {e}"))?;
    Ok(b)
}

pub(crate) fn unpack<R: Read>(mut r: R, dir: &Path, total: u64) -> Result<(), String> {
    if read_exact(&mut r, 8)? != MAGIC {
        return Err("not a Janus snapshot".into());
    }
    let n = u32::from_be_bytes(read_exact(&mut r, 4)?.try_into().map_err(|_| "count")?);
    let mut seen = 12u64;
    for _ in 0..n {
        let len = u16::from_be_bytes(read_exact(&mut r, 2)?.try_into().map_err(|_| "name")?);
        let len = usize::from(len);
        if len == 0 || len > MAX_NAME {
            return Err("bad file name in snapshot".into());
        }
        let name = String::from_utf8(read_exact(&mut r, len)?).map_err(|_| "bad file name")?;
        if name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(format!("bad file name {name:?} in snapshot"));
        }
        let size = u64::from_be_bytes(read_exact(&mut r, 8)?.try_into().map_err(|_| "size")?);
        seen += 2 + len as u64 + 8 + size;
        if seen > total {
            return Err("snapshot truncated".into());
        }
        let mut f = File::create(dir.join(&name)).map_err(e2s)?;
        let copied = std::io::copy(&mut (&mut r).take(size), &mut f).map_err(e2s)?;
        if copied != size {
            return Err("snapshot truncated".into());
        }
        f.sync_all().map_err(e2s)?;
    }
    Ok(())
}

/// Make a copy of checkpoint `ckpt` the state database: the copy is built
/// beside it, then renamed into place.
pub(crate) fn swap_in(data_dir: &Path, ckpt: &Path) -> Result<(), String> {
    let live = state_dir(data_dir);
    let new = data_dir.join("state.new");
    let old = data_dir.join("state.old");
    if new.exists() {
        fs::remove_dir_all(&new).map_err(e2s)?;
    }
    clone_db_dir(ckpt, &new)?;
    if live.exists() {
        if old.exists() {
            fs::remove_dir_all(&old).map_err(e2s)?;
        }
        fs::rename(&live, &old).map_err(e2s)?;
    }
    fs::rename(&new, &live).map_err(e2s)?;
    sync_dir(data_dir)?;
    if old.exists() {
        fs::remove_dir_all(&old).map_err(e2s)?;
    }
    Ok(())
}

/// Finish a swap a crash interrupted.
pub(crate) fn recover_swap(data_dir: &Path) -> Result<(), OpenError> {
    let live = state_dir(data_dir);
    let new = data_dir.join("state.new");
    let old = data_dir.join("state.old");
    let io = |e: std::io::Error| OpenError::Snapshot(e.to_string());
    if !live.exists() && new.exists() && old.exists() {
        // Renamed the old one away, not the new one in: the new copy is
        // complete (it is renamed only after it is).
        fs::rename(&new, &live).map_err(io)?;
    }
    if live.exists() && old.exists() {
        fs::remove_dir_all(&old).map_err(io)?;
    }
    if new.exists() {
        fs::remove_dir_all(&new).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pack_round_trip_and_refusals() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("000001.sst"), b"table").unwrap();
        fs::write(src.join("MANIFEST-000002"), b"manifest").unwrap();
        let sd = SnapshotDir::new(d.path());
        fs::create_dir_all(&sd.root).unwrap();
        let pack = d.path().join("p");
        sd.pack(&src, &pack).unwrap();
        let out = d.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let total = fs::metadata(&pack).unwrap().len();
        unpack(File::open(&pack).unwrap(), &out, total).unwrap();
        assert_eq!(fs::read(out.join("000001.sst")).unwrap(), b"table");
        assert_eq!(fs::read(out.join("MANIFEST-000002")).unwrap(), b"manifest");
        // Truncated and hostile packs are refused.
        let raw = fs::read(&pack).unwrap();
        let cut = &raw[..raw.len() - 3];
        assert!(unpack(cut, &out, cut.len() as u64).is_err());
        let mut evil = MAGIC.to_vec();
        evil.extend_from_slice(&1u32.to_be_bytes());
        evil.extend_from_slice(&5u16.to_be_bytes());
        evil.extend_from_slice(b"../x1");
        evil.extend_from_slice(&0u64.to_be_bytes());
        assert!(unpack(evil.as_slice(), &out, evil.len() as u64).is_err());
    }
}

/// A snapshot's data as openraft streams it: the pack file, with the
/// transfer's progress logged every `PROGRESS_STEP` bytes on both sides.
pub struct SnapshotFile {
    file: tokio::fs::File,
    id: String,
    /// The pack's size when sending (0 while receiving: not known yet).
    total: u64,
    moved: u64,
    next_log: u64,
}

const PROGRESS_STEP: u64 = 64 << 20;

impl SnapshotFile {
    pub(crate) fn sending(file: File, id: &str) -> Result<SnapshotFile, String> {
        let total = file.metadata().map_err(e2s)?.len();
        tracing::info!(snapshot = %id, total, "sending snapshot");
        Ok(SnapshotFile {
            file: tokio::fs::File::from_std(file),
            id: id.to_string(),
            total,
            moved: 0,
            next_log: PROGRESS_STEP,
        })
    }

    pub(crate) fn receiving(file: File) -> SnapshotFile {
        SnapshotFile {
            file: tokio::fs::File::from_std(file),
            id: String::new(),
            total: 0,
            moved: 0,
            next_log: PROGRESS_STEP,
        }
    }

    pub(crate) async fn into_std(self) -> File {
        self.file.into_std().await
    }

    fn progress(&mut self, n: usize, sending: bool) {
        self.moved += n as u64;
        let end = sending && self.total > 0 && self.moved >= self.total;
        if self.moved >= self.next_log || end {
            self.next_log = self.moved + PROGRESS_STEP;
            if sending {
                tracing::info!(snapshot = %self.id, sent = self.moved, total = self.total, "snapshot transfer");
            } else {
                tracing::info!(received = self.moved, "snapshot transfer");
            }
        }
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.file).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.progress(n, true);
        }
        r
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let r = std::pin::Pin::new(&mut self.file).poll_write(cx, buf);
        if let std::task::Poll::Ready(Ok(n)) = r {
            self.progress(n, false);
        }
        r
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: std::pin::Pin<&mut Self>, pos: SeekFrom) -> std::io::Result<()> {
        std::pin::Pin::new(&mut self.file).start_seek(pos)
    }

    fn poll_complete(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        std::pin::Pin::new(&mut self.file).poll_complete(cx)
    }
}
