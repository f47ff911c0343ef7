//! Snapshots as RocksDB checkpoints.
//!
//! `snapshots/<id>.ckpt/` is a checkpoint of the state database (table
//! files hard-linked, the rest copied), `<id>.meta` its Raft metadata and
//! `current` names the latest. A member that sends a snapshot streams the
//! checkpoint's files as one pack (openraft sends it in chunks), read in
//! place; the receiver unpacks the chunks into files as they arrive
//! (`incoming-<n>/`), which become a checkpoint of its own, and makes a
//! copy of that (table files hard-linked) its state database.

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
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

    /// The snapshot's data as one stream, read from the checkpoint's
    /// files as it is sent (no copy).
    pub(crate) fn open_data(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
    ) -> Result<SnapshotFile, String> {
        let id = &meta.snapshot_id;
        let pack = PackReader::open(&self.ckpt(id))?;
        Ok(SnapshotFile::sending(pack, id))
    }

    /// A new directory to unpack a snapshot into as it arrives.
    pub(crate) fn incoming(&self, seq: u64) -> Result<PathBuf, String> {
        let dir = self.root.join(format!("incoming-{seq}"));
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(e2s)?;
        }
        fs::create_dir_all(&dir).map_err(e2s)?;
        Ok(dir)
    }

    /// Make a received (unpacked, synced) snapshot the current checkpoint;
    /// returns the checkpoint's directory.
    pub(crate) fn receive(
        &self,
        meta: &SnapshotMeta<NodeId, Member>,
        unpacked: &Path,
    ) -> Result<PathBuf, String> {
        let id = &meta.snapshot_id;
        if id.is_empty() || id.contains(['/', '\\']) || id.starts_with('.') {
            return Err(format!("bad snapshot id {id:?}"));
        }
        let ckpt = self.ckpt(id);
        if ckpt.exists() {
            fs::remove_dir_all(&ckpt).map_err(e2s)?;
        }
        fs::rename(unpacked, &ckpt).map_err(e2s)?;
        self.make_current(meta)?;
        tracing::info!(snapshot = %id, "received snapshot");
        Ok(ckpt)
    }
}

/// The files of a directory as one pack stream: `JANUSCK1`, the file
/// count (u32), then per file its name (u16 length first), its size (u64)
/// and its bytes; integers big-endian. Every file is opened up front and
/// read in place (positional reads, so the stream can seek), so the pack
/// costs no copy and reads the files even once the directory is removed.
pub(crate) struct PackReader {
    parts: Vec<Part>,
    /// Offset of each part in the stream.
    starts: Vec<u64>,
    len: u64,
    pos: u64,
}

enum Part {
    Bytes(Vec<u8>),
    File { name: String, file: File, size: u64 },
}

impl Part {
    fn len(&self) -> u64 {
        match self {
            Part::Bytes(b) => b.len() as u64,
            Part::File { size, .. } => *size,
        }
    }
}

impl PackReader {
    pub(crate) fn open(dir: &Path) -> Result<PackReader, String> {
        let list = files(dir)?;
        let mut head = MAGIC.to_vec();
        head.extend_from_slice(&(list.len() as u32).to_be_bytes());
        let mut parts = Vec::new();
        for (name, path, size) in list {
            if name.len() > MAX_NAME {
                return Err(format!("{name}: file name too long to pack"));
            }
            head.extend_from_slice(&(name.len() as u16).to_be_bytes());
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(&size.to_be_bytes());
            parts.push(Part::Bytes(std::mem::take(&mut head)));
            let file = File::open(&path).map_err(e2s)?;
            parts.push(Part::File { name, file, size });
        }
        if !head.is_empty() {
            parts.push(Part::Bytes(head));
        }
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0;
        for p in &parts {
            starts.push(len);
            len += p.len();
        }
        Ok(PackReader {
            parts,
            starts,
            len,
            pos: 0,
        })
    }

    /// The pack's size in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }
}

impl Read for PackReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if buf.is_empty() || self.pos >= self.len {
            return Ok(0);
        }
        // The last part starting at or before `pos` (empty files share a
        // start with their successor; skip to one with bytes left).
        let mut i = self.starts.partition_point(|&s| s <= self.pos) - 1;
        while self.pos - self.starts[i] >= self.parts[i].len() {
            i += 1;
        }
        let off = self.pos - self.starts[i];
        let want = (self.parts[i].len() - off).min(buf.len() as u64) as usize;
        let n = match &self.parts[i] {
            Part::Bytes(b) => {
                buf[..want].copy_from_slice(&b[off as usize..off as usize + want]);
                want
            }
            Part::File { name, file, .. } => {
                let n = file.read_at(&mut buf[..want], off)?;
                if n == 0 {
                    // RocksDB never shortens a file it wrote; one that did
                    // would leave the pack's sizes wrong.
                    return Err(std::io::Error::other(format!(
                        "{name}: changed while packing"
                    )));
                }
                n
            }
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for PackReader {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match pos {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek before the start of the snapshot",
            )),
        }
    }
}

/// Bytes written to a file between two starts of its writeback: a large
/// snapshot or backup leaves no burst of dirty pages behind it to stall the
/// log's fsyncs on the same disk.
const WRITEBACK_STEP: u64 = 8 << 20;

/// Unpacks a pack stream into files of a directory as its bytes arrive
/// (the format of [`PackReader`]); [`Unpacker::finish`] checks it was
/// whole and makes the files durable.
pub(crate) struct Unpacker {
    dir: PathBuf,
    /// Bytes of the header field being read.
    field: Vec<u8>,
    step: UnpackStep,
    /// Files announced and not yet begun.
    files_left: u32,
    done: Vec<File>,
    /// Bytes taken so far.
    pub(crate) taken: u64,
    /// Zero bytes after the last file are padding (a backup's), not an
    /// error.
    zero_padding: bool,
}

enum UnpackStep {
    Magic,
    Count,
    NameLen,
    Name(usize),
    Size(String),
    Data {
        file: File,
        left: u64,
        unsynced: u64,
    },
}

fn bad(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl Unpacker {
    pub(crate) fn new(dir: &Path) -> Unpacker {
        Unpacker {
            dir: dir.to_path_buf(),
            field: Vec::new(),
            step: UnpackStep::Magic,
            files_left: 0,
            done: Vec::new(),
            taken: 0,
            zero_padding: false,
        }
    }

    /// Start over (a sender that begins the stream again): what was
    /// unpacked so far goes.
    pub(crate) fn reset(&mut self) -> Result<(), String> {
        *self = Unpacker {
            zero_padding: self.zero_padding,
            ..Unpacker::new(&self.dir)
        };
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(e2s)?;
        }
        fs::create_dir_all(&self.dir).map_err(e2s)
    }

    /// Bytes the current header field still needs.
    fn field_len(&self) -> usize {
        match self.step {
            UnpackStep::Magic | UnpackStep::Size(_) => 8,
            UnpackStep::Count => 4,
            UnpackStep::NameLen => 2,
            UnpackStep::Name(n) => n,
            UnpackStep::Data { .. } => 0,
        }
    }

    /// A header field is complete: the next step.
    fn field_done(&mut self) -> std::io::Result<()> {
        let f = std::mem::take(&mut self.field);
        let step = std::mem::replace(&mut self.step, UnpackStep::Magic);
        self.step = match step {
            UnpackStep::Magic if f == MAGIC => UnpackStep::Count,
            UnpackStep::Magic => return Err(bad("not a Janus snapshot")),
            UnpackStep::Count => {
                self.files_left = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                UnpackStep::NameLen
            }
            UnpackStep::NameLen => {
                let len = usize::from(u16::from_be_bytes([f[0], f[1]]));
                if len == 0 || len > MAX_NAME {
                    return Err(bad("bad file name in snapshot"));
                }
                if self.files_left == 0 {
                    return Err(bad("more files in the snapshot than it announced"));
                }
                UnpackStep::Name(len)
            }
            UnpackStep::Name(_) => {
                let name = String::from_utf8(f).map_err(|_| bad("bad file name"))?;
                if name.contains(['/', '\\']) || name.starts_with('.') {
                    return Err(bad(format!("bad file name {name:?} in snapshot")));
                }
                UnpackStep::Size(name)
            }
            UnpackStep::Size(name) => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&f);
                let file = File::create(self.dir.join(&name))?;
                self.files_left -= 1;
                UnpackStep::Data {
                    file,
                    left: u64::from_be_bytes(b),
                    unsynced: 0,
                }
            }
            UnpackStep::Data { .. } => unreachable!("data is not a header field"),
        };
        self.end_of_file_if_empty();
        Ok(())
    }

    /// A file whose bytes are all written is closed (kept for the sync).
    fn end_of_file_if_empty(&mut self) {
        if matches!(self.step, UnpackStep::Data { left: 0, .. }) {
            if let UnpackStep::Data { file, .. } =
                std::mem::replace(&mut self.step, UnpackStep::NameLen)
            {
                self.done.push(file);
            }
        }
    }

    /// Every announced file arrived whole: sync them and the directory.
    pub(crate) fn finish(mut self) -> Result<PathBuf, String> {
        let complete = self.files_left == 0
            && self.field.is_empty()
            && matches!(self.step, UnpackStep::NameLen);
        if !complete {
            return Err("snapshot truncated".into());
        }
        for f in self.done.drain(..) {
            f.sync_all().map_err(e2s)?;
        }
        sync_dir(&self.dir)?;
        Ok(self.dir)
    }
}

/// Start writing back `file`'s dirty pages without waiting for them.
fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and flags; no memory is passed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE);
    }
}

impl Write for Unpacker {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut rest = buf;
        while !rest.is_empty() {
            if let UnpackStep::Data {
                file,
                left,
                unsynced,
            } = &mut self.step
            {
                let n = (*left).min(rest.len() as u64) as usize;
                file.write_all(&rest[..n])?;
                *left -= n as u64;
                *unsynced += n as u64;
                if *unsynced >= WRITEBACK_STEP {
                    start_writeback(file);
                    *unsynced = 0;
                }
                rest = &rest[n..];
                self.end_of_file_if_empty();
                continue;
            }
            if matches!(self.step, UnpackStep::NameLen) && self.files_left == 0 {
                if self.zero_padding && rest.iter().all(|&b| b == 0) {
                    break;
                }
                return Err(bad("bytes after the last file of the snapshot"));
            }
            let need = self.field_len() - self.field.len();
            let n = need.min(rest.len());
            self.field.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            if self.field.len() == self.field_len() {
                self.field_done()?;
            }
        }
        self.taken += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Unpack the pack stream `r` (`total` bytes, zero padding after the
/// last file allowed) into the directory `dir`.
pub(crate) fn unpack<R: Read>(r: R, dir: &Path, total: u64) -> Result<(), String> {
    let mut u = Unpacker::new(dir);
    u.zero_padding = true;
    std::io::copy(&mut r.take(total), &mut u).map_err(e2s)?;
    u.finish().map(|_| ())
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

/// A snapshot's data as openraft streams it: read from the checkpoint's
/// files when sending, unpacked into files as it arrives when receiving;
/// the transfer's progress is logged every `PROGRESS_STEP` bytes on both
/// sides.
pub struct SnapshotFile {
    io: SnapshotIo,
    id: String,
    /// The pack's size when sending (0 while receiving: not known yet).
    total: u64,
    moved: u64,
    next_log: u64,
    /// Sending: when the first byte was read, and the wait that keeps the
    /// transfer at `SEND_RATE`.
    pace: Option<std::time::Instant>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

/// A snapshot is sent at most this fast: reading, framing and sending a
/// large one at full speed took the CPU and disk the leader and the other
/// followers need (on a busy host a follower then missed heartbeats and
/// called an election). 1 GiB takes 16 s.
const SEND_RATE: u64 = 64 << 20;
/// Sent before the pace applies (small snapshots go at once).
const SEND_BURST: u64 = 16 << 20;

enum SnapshotIo {
    Send(PackReader),
    Receive(Unpacker),
}

const PROGRESS_STEP: u64 = 64 << 20;

fn wrong_way() -> std::io::Error {
    std::io::Error::other("snapshot stream used the wrong way")
}

impl SnapshotFile {
    fn sending(pack: PackReader, id: &str) -> SnapshotFile {
        let total = pack.len();
        SnapshotFile {
            io: SnapshotIo::Send(pack),
            id: id.to_string(),
            total,
            moved: 0,
            next_log: PROGRESS_STEP,
            pace: None,
            sleep: None,
        }
    }

    pub(crate) fn receiving(dir: &Path) -> SnapshotFile {
        SnapshotFile {
            io: SnapshotIo::Receive(Unpacker::new(dir)),
            id: String::new(),
            total: 0,
            moved: 0,
            next_log: PROGRESS_STEP,
            pace: None,
            sleep: None,
        }
    }

    /// The received snapshot's directory, once every file arrived whole
    /// and is synced (blocking). A snapshot handed over whole (a sending
    /// one, as openraft's tests install) is unpacked into `spare` first.
    pub(crate) fn into_unpacked(
        self,
        spare: impl FnOnce() -> Result<PathBuf, String>,
    ) -> Result<PathBuf, String> {
        match self.io {
            SnapshotIo::Receive(u) => u.finish(),
            SnapshotIo::Send(mut pack) => {
                let dir = spare()?;
                pack.seek(SeekFrom::Start(0)).map_err(e2s)?;
                let len = pack.len();
                unpack(pack, &dir, len)?;
                Ok(dir)
            }
        }
    }

    /// Ready once sending more keeps the transfer within `SEND_RATE`.
    fn paced(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        use std::future::Future;
        loop {
            if let Some(s) = self.sleep.as_mut() {
                if s.as_mut().poll(cx).is_pending() {
                    return std::task::Poll::Pending;
                }
                self.sleep = None;
            }
            if self.pace.is_none() {
                tracing::info!(snapshot = %self.id, total = self.total, "sending snapshot");
            }
            let start = *self.pace.get_or_insert_with(std::time::Instant::now);
            let allowed = SEND_BURST as f64 + SEND_RATE as f64 * start.elapsed().as_secs_f64();
            let ahead = self.moved as f64 - allowed;
            if ahead <= 0.0 {
                return std::task::Poll::Ready(());
            }
            let wait = std::time::Duration::from_secs_f64(ahead / SEND_RATE as f64);
            self.sleep = Some(Box::pin(tokio::time::sleep(wait)));
        }
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

// The reads and writes below are plain file I/O done in place: a chunk is
// at most a few MiB, read from the page cache (the checkpoint's tables
// were just written) or written with writeback started every few MiB.
impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.paced(cx).is_pending() {
            return std::task::Poll::Pending;
        }
        let SnapshotIo::Send(pack) = &mut self.io else {
            return std::task::Poll::Ready(Err(wrong_way()));
        };
        let n = match pack.read(buf.initialize_unfilled()) {
            Ok(n) => n,
            Err(e) => return std::task::Poll::Ready(Err(e)),
        };
        buf.advance(n);
        if n > 0 {
            self.progress(n, true);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let SnapshotIo::Receive(u) = &mut self.io else {
            return std::task::Poll::Ready(Err(wrong_way()));
        };
        let r = u.write(buf);
        if let Ok(n) = r {
            self.progress(n, false);
        }
        std::task::Poll::Ready(r)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: std::pin::Pin<&mut Self>, pos: SeekFrom) -> std::io::Result<()> {
        match &mut self.io {
            SnapshotIo::Send(pack) => pack.seek(pos).map(|_| ()),
            // Chunks arrive in order; a sender that starts over seeks to 0.
            SnapshotIo::Receive(u) => match pos {
                SeekFrom::Start(p) if p == u.taken => Ok(()),
                SeekFrom::Current(0) => Ok(()),
                SeekFrom::Start(0) => u.reset().map_err(std::io::Error::other),
                _ => Err(std::io::Error::other(
                    "snapshot chunk out of order; the sender must start over",
                )),
            },
        }
    }

    fn poll_complete(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<u64>> {
        let pos = match &self.io {
            SnapshotIo::Send(pack) => pack.pos,
            SnapshotIo::Receive(u) => u.taken,
        };
        std::task::Poll::Ready(Ok(pos))
    }
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
        let pack = d.path().join("p");
        let mut r = PackReader::open(&src).unwrap();
        let len = r.len();
        std::io::copy(&mut r, &mut File::create(&pack).unwrap()).unwrap();
        assert_eq!(fs::metadata(&pack).unwrap().len(), len);
        // Positional: a seek back reads the same bytes again.
        let raw = fs::read(&pack).unwrap();
        r.seek(SeekFrom::Start(5)).unwrap();
        let mut again = Vec::new();
        r.read_to_end(&mut again).unwrap();
        assert_eq!(again, raw[5..]);
        let out = d.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let total = fs::metadata(&pack).unwrap().len();
        unpack(File::open(&pack).unwrap(), &out, total).unwrap();
        assert_eq!(fs::read(out.join("000001.sst")).unwrap(), b"table");
        assert_eq!(fs::read(out.join("MANIFEST-000002")).unwrap(), b"manifest");
        // Fed in pieces of any size, the same files come out.
        for step in [1, 3, 7, 64] {
            let out = d.path().join(format!("out{step}"));
            fs::create_dir_all(&out).unwrap();
            let mut u = Unpacker::new(&out);
            for piece in raw.chunks(step) {
                u.write_all(piece).unwrap();
            }
            u.finish().unwrap();
            assert_eq!(fs::read(out.join("000001.sst")).unwrap(), b"table");
        }
        // Truncated and hostile packs are refused, and so are extra bytes
        // other than padding.
        let mut long = raw.clone();
        long.extend_from_slice(&[0, 0]);
        unpack(long.as_slice(), &out, long.len() as u64).unwrap();
        long.push(1);
        assert!(unpack(long.as_slice(), &out, long.len() as u64).is_err());
        let mut u = Unpacker::new(&out);
        assert!(u.write_all(&long).is_err(), "a snapshot has no padding");
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
