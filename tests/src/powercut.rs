//! A power-cut fault: a FUSE filesystem, mounted as a host's data
//! directory, that keeps apart what the host wrote but did not make
//! durable and throws it away on a "power cut", as LazyFS does for
//! PostgreSQL and etcd.
//!
//! It holds the files in memory, twice: as the host sees them, and as
//! they would be found after a power cut. `fsync`/`fdatasync` of a file
//! copies its changed pages and size to the durable side; `fsync` of a
//! directory copies its entries (files created, renamed, removed). Nothing
//! else does: not `close`, not `sync_file_range` (which never reaches a
//! FUSE filesystem: the kernel has nothing to write back, every file is
//! opened `direct_io`), not time. [`PowerCutFs::cut`] makes the durable side
//! the only one: unsynced data, unsynced growth, new entries and renames
//! not followed by an `fsync` of their directory are gone. This is the
//! strict POSIX reading (ext4 in its default mode often keeps more); a
//! store that survives it survives any of them.
//!
//! Attributes and entries are replied with a zero TTL and files bypass the
//! page cache, so after a cut the kernel holds nothing stale. Between
//! [`PowerCutFs::freeze`] and the cut, every change fails with `EIO`: a
//! request of the killed host still in flight cannot land afterwards.
//! Mounting needs root (as CI has) and `/dev/fuse`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite, Request, TimeOrNow,
};
use libc::{EEXIST, EINVAL, EIO, EISDIR, ENOENT, ENOTDIR, ENOTEMPTY};

const PAGE: u64 = 4096;
const ROOT: u64 = fuser::FUSE_ROOT_ID;
const TTL: Duration = Duration::ZERO;

/// A file's bytes: pages of [`PAGE`] bytes (missing pages are zeros) and a
/// size.
#[derive(Clone, Default)]
struct Bytes {
    pages: HashMap<u64, Box<[u8]>>,
    size: u64,
}

impl Bytes {
    fn read(&self, offset: u64, len: u64) -> Vec<u8> {
        let end = (offset + len).min(self.size);
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        let mut at = offset;
        while at < end {
            let (page, within) = (at / PAGE, at % PAGE);
            let n = (PAGE - within).min(end - at);
            match self.pages.get(&page) {
                Some(p) => out.extend_from_slice(&p[within as usize..(within + n) as usize]),
                None => out.resize(out.len() + n as usize, 0),
            }
            at += n;
        }
        out
    }

    /// Write `data` at `offset`; returns the pages touched.
    fn write(&mut self, offset: u64, data: &[u8], touched: &mut BTreeSet<u64>) {
        let mut done = 0usize;
        while done < data.len() {
            let at = offset + done as u64;
            let (page, within) = (at / PAGE, (at % PAGE) as usize);
            let n = (PAGE as usize - within).min(data.len() - done);
            let p = self
                .pages
                .entry(page)
                .or_insert_with(|| vec![0u8; PAGE as usize].into_boxed_slice());
            p[within..within + n].copy_from_slice(&data[done..done + n]);
            touched.insert(page);
            done += n;
        }
        self.size = self.size.max(offset + data.len() as u64);
    }

    /// Cut or extend to `size`; returns the pages touched.
    fn truncate(&mut self, size: u64, touched: &mut BTreeSet<u64>) {
        let keep = size.div_ceil(PAGE);
        let gone: Vec<u64> = self.pages.keys().copied().filter(|&p| p >= keep).collect();
        for p in gone {
            self.pages.remove(&p);
            touched.insert(p);
        }
        if !size.is_multiple_of(PAGE)
            && let Some(p) = self.pages.get_mut(&(size / PAGE))
        {
            p[(size % PAGE) as usize..].fill(0);
            touched.insert(size / PAGE);
        }
        self.size = size;
    }
}

/// A file as the host sees it and as a power cut would leave it.
#[derive(Default)]
struct File {
    now: Bytes,
    durable: Bytes,
    /// Pages written since the last fsync.
    dirty: BTreeSet<u64>,
    size_changed: bool,
}

impl File {
    fn write(&mut self, offset: u64, data: &[u8]) {
        let size = self.now.size;
        self.now.write(offset, data, &mut self.dirty);
        self.size_changed |= self.now.size != size;
    }

    fn truncate(&mut self, size: u64) {
        self.size_changed |= self.now.size != size;
        self.now.truncate(size, &mut self.dirty);
    }

    fn sync(&mut self) {
        for page in std::mem::take(&mut self.dirty) {
            match self.now.pages.get(&page) {
                Some(p) => self.durable.pages.insert(page, p.clone()),
                None => self.durable.pages.remove(&page),
            };
        }
        self.durable.size = self.now.size;
        self.size_changed = false;
    }

    /// Back to the durable side; what was lost.
    fn cut(&mut self) -> Lost {
        let lost = Lost {
            pages: self.dirty.len() as u64,
            sizes: u64::from(self.size_changed),
            dirs: 0,
        };
        self.now = self.durable.clone();
        self.dirty.clear();
        self.size_changed = false;
        lost
    }
}

enum Body {
    File(File),
    Dir {
        now: BTreeMap<OsString, u64>,
        durable: BTreeMap<OsString, u64>,
    },
}

struct Node {
    body: Body,
    perm: u16,
    mtime: SystemTime,
}

/// What a power cut threw away.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Lost {
    /// Pages written but not synced.
    pub pages: u64,
    /// Files whose size had changed since their last sync.
    pub sizes: u64,
    /// Directories whose entries had changed since their last sync.
    pub dirs: u64,
}

impl std::ops::AddAssign for Lost {
    fn add_assign(&mut self, other: Self) {
        self.pages += other.pages;
        self.sizes += other.sizes;
        self.dirs += other.dirs;
    }
}

#[derive(Default)]
struct State {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
    /// Open handles and their inode.
    handles: HashMap<u64, u64>,
    next_fh: u64,
    frozen: bool,
}

impl State {
    fn new() -> Self {
        let mut s = Self {
            next_ino: ROOT + 1,
            next_fh: 1,
            ..Self::default()
        };
        s.nodes.insert(
            ROOT,
            Node {
                body: Body::Dir {
                    now: BTreeMap::new(),
                    durable: BTreeMap::new(),
                },
                perm: 0o755,
                mtime: SystemTime::now(),
            },
        );
        s
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, size, nlink) = match &node.body {
            Body::File(f) => (FileType::RegularFile, f.now.size, 1),
            Body::Dir { .. } => (FileType::Directory, 0, 2),
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: node.mtime,
            mtime: node.mtime,
            ctime: node.mtime,
            crtime: node.mtime,
            kind,
            perm: node.perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: PAGE as u32,
            flags: 0,
        })
    }

    fn entries(&mut self, ino: u64) -> Result<&mut BTreeMap<OsString, u64>, i32> {
        match self.nodes.get_mut(&ino).map(|n| &mut n.body) {
            Some(Body::Dir { now, .. }) => Ok(now),
            Some(Body::File(_)) => Err(ENOTDIR),
            None => Err(ENOENT),
        }
    }

    fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<u64, i32> {
        self.entries(parent)?.get(name).copied().ok_or(ENOENT)
    }

    fn add(&mut self, parent: u64, name: &OsStr, body: Body, perm: u16) -> Result<u64, i32> {
        if self.frozen {
            return Err(EIO);
        }
        let ino = self.next_ino;
        let entries = self.entries(parent)?;
        if entries.contains_key(name) {
            return Err(EEXIST);
        }
        entries.insert(name.to_os_string(), ino);
        self.next_ino += 1;
        self.nodes.insert(
            ino,
            Node {
                body,
                perm,
                mtime: SystemTime::now(),
            },
        );
        Ok(ino)
    }

    fn file(&mut self, ino: u64) -> Result<&mut File, i32> {
        if self.frozen {
            return Err(EIO);
        }
        let node = self.nodes.get_mut(&ino).ok_or(ENOENT)?;
        node.mtime = SystemTime::now();
        match &mut node.body {
            Body::File(f) => Ok(f),
            Body::Dir { .. } => Err(EISDIR),
        }
    }

    fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<(), i32> {
        self.file(ino)?.write(offset, data);
        Ok(())
    }

    fn truncate(&mut self, ino: u64, size: u64) -> Result<(), i32> {
        self.file(ino)?.truncate(size);
        Ok(())
    }

    /// `fsync`/`fdatasync` of a file, `fsync` of a directory.
    fn sync(&mut self, ino: u64) -> Result<(), i32> {
        if self.frozen {
            return Err(EIO);
        }
        match &mut self.nodes.get_mut(&ino).ok_or(ENOENT)?.body {
            Body::File(f) => f.sync(),
            Body::Dir { now, durable } => *durable = now.clone(),
        }
        Ok(())
    }

    fn unlink(&mut self, parent: u64, name: &OsStr, dir: bool) -> Result<(), i32> {
        if self.frozen {
            return Err(EIO);
        }
        let ino = self.lookup(parent, name)?;
        match (&self.nodes[&ino].body, dir) {
            (Body::Dir { now, .. }, true) if !now.is_empty() => return Err(ENOTEMPTY),
            (Body::Dir { .. }, false) => return Err(EISDIR),
            (Body::File(_), true) => return Err(ENOTDIR),
            _ => {}
        }
        self.entries(parent)?.remove(name);
        self.collect();
        Ok(())
    }

    fn rename(&mut self, from: (u64, &OsStr), to: (u64, &OsStr), flags: u32) -> Result<(), i32> {
        if self.frozen {
            return Err(EIO);
        }
        if flags & !libc::RENAME_NOREPLACE != 0 {
            return Err(EINVAL);
        }
        let ino = self.lookup(from.0, from.1)?;
        if let Ok(old) = self.lookup(to.0, to.1) {
            if flags & libc::RENAME_NOREPLACE != 0 {
                return Err(EEXIST);
            }
            if matches!(&self.nodes[&old].body, Body::Dir { now, .. } if !now.is_empty()) {
                return Err(ENOTEMPTY);
            }
        }
        self.entries(from.0)?.remove(from.1);
        self.entries(to.0)?.insert(to.1.to_os_string(), ino);
        self.collect();
        Ok(())
    }

    /// Free the nodes no entry (as seen or durable) and no handle reaches.
    fn collect(&mut self) {
        let mut reached: BTreeSet<u64> = self.handles.values().copied().collect();
        let mut todo = vec![ROOT];
        while let Some(ino) = todo.pop() {
            if !reached.insert(ino) && ino != ROOT {
                continue;
            }
            if let Some(Body::Dir { now, durable }) = self.nodes.get(&ino).map(|n| &n.body) {
                todo.extend(
                    now.values()
                        .chain(durable.values())
                        .filter(|i| !reached.contains(i)),
                );
            }
        }
        self.nodes.retain(|ino, _| reached.contains(ino));
    }

    /// The power cut: only what was synced is left.
    fn cut(&mut self) -> Lost {
        let mut lost = Lost::default();
        for node in self.nodes.values_mut() {
            match &mut node.body {
                Body::File(f) => lost += f.cut(),
                Body::Dir { now, durable } => {
                    lost.dirs += u64::from(now != durable);
                    *now = durable.clone();
                }
            }
        }
        self.handles.clear();
        self.collect();
        lost
    }
}

/// The filesystem as fuser drives it: every request under one lock.
struct Fs(Arc<Mutex<State>>);

impl Fs {
    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn empty(reply: ReplyEmpty, result: Result<(), i32>) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(e),
    }
}

fn entry(reply: ReplyEntry, s: &State, result: Result<u64, i32>) {
    match result.and_then(|ino| s.attr(ino).ok_or(ENOENT)) {
        Ok(attr) => reply.entry(&TTL, &attr, 0),
        Err(e) => reply.error(e),
    }
}

fn file_body() -> Body {
    Body::File(File::default())
}

impl Filesystem for Fs {
    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let mut s = self.state();
        let result = s.lookup(parent, name);
        entry(reply, &s, result);
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, _fh: Option<u64>, reply: ReplyAttr) {
        match self.state().attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(ENOENT),
        }
    }

    fn setattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<u64>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<u32>,
        reply: ReplyAttr,
    ) {
        let mut s = self.state();
        let mut result = Ok(());
        if let Some(size) = size {
            result = s.truncate(ino, size);
        }
        if let (Some(mode), Some(node)) = (mode, s.nodes.get_mut(&ino)) {
            node.perm = (mode & 0o7777) as u16;
        }
        match result.and_then(|()| s.attr(ino).ok_or(ENOENT)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn mknod(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let result = s.add(parent, name, file_body(), (mode & 0o7777) as u16);
        entry(reply, &s, result);
    }

    fn mkdir(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        reply: ReplyEntry,
    ) {
        let mut s = self.state();
        let body = Body::Dir {
            now: BTreeMap::new(),
            durable: BTreeMap::new(),
        };
        let result = s.add(parent, name, body, (mode & 0o7777) as u16);
        entry(reply, &s, result);
    }

    fn unlink(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().unlink(parent, name, false));
    }

    fn rmdir(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEmpty) {
        empty(reply, self.state().unlink(parent, name, true));
    }

    fn rename(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
        reply: ReplyEmpty,
    ) {
        empty(
            reply,
            self.state()
                .rename((parent, name), (newparent, newname), flags),
        );
    }

    fn open(&mut self, _req: &Request<'_>, ino: u64, _flags: i32, reply: ReplyOpen) {
        let mut s = self.state();
        if !s.nodes.contains_key(&ino) {
            return reply.error(ENOENT);
        }
        let fh = s.next_fh;
        s.next_fh += 1;
        s.handles.insert(fh, ino);
        reply.opened(fh, fuser::consts::FOPEN_DIRECT_IO);
    }

    fn create(
        &mut self,
        _req: &Request<'_>,
        parent: u64,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut s = self.state();
        let result = s
            .add(parent, name, file_body(), (mode & 0o7777) as u16)
            .and_then(|ino| s.attr(ino).ok_or(ENOENT));
        match result {
            Ok(attr) => {
                let fh = s.next_fh;
                s.next_fh += 1;
                s.handles.insert(fh, attr.ino);
                reply.created(&TTL, &attr, 0, fh, fuser::consts::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        let s = self.state();
        match s.nodes.get(&ino).map(|n| &n.body) {
            Some(Body::File(f)) => {
                reply.data(&f.now.read(offset.max(0) as u64, u64::from(size)));
            }
            Some(Body::Dir { .. }) => reply.error(EISDIR),
            None => reply.error(ENOENT),
        }
    }

    fn write(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        data: &[u8],
        _write_flags: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyWrite,
    ) {
        match self.state().write(ino, offset.max(0) as u64, data) {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        _fh: u64,
        _lock_owner: u64,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &mut self,
        _req: &Request<'_>,
        _ino: u64,
        fh: u64,
        _flags: i32,
        _lock_owner: Option<u64>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let mut s = self.state();
        if s.handles.remove(&fh).is_some() {
            s.collect();
        }
        reply.ok();
    }

    fn fsync(&mut self, _req: &Request<'_>, ino: u64, _fh: u64, _data: bool, reply: ReplyEmpty) {
        empty(reply, self.state().sync(ino));
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let mut s = self.state();
        let names: Vec<(OsString, u64)> = match s.entries(ino) {
            Ok(entries) => entries.iter().map(|(n, i)| (n.clone(), *i)).collect(),
            Err(e) => return reply.error(e),
        };
        let listing = [(OsString::from("."), ino), (OsString::from(".."), ino)]
            .into_iter()
            .chain(names);
        for (i, (name, child)) in listing.enumerate().skip(offset.max(0) as usize) {
            let kind = match s.nodes.get(&child).map(|n| &n.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            if reply.add(child, i as i64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn fsyncdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        _datasync: bool,
        reply: ReplyEmpty,
    ) {
        empty(reply, self.state().sync(ino));
    }

    fn statfs(&mut self, _req: &Request<'_>, _ino: u64, reply: fuser::ReplyStatfs) {
        // 4 GiB, nearly all free: the host never checks.
        reply.statfs(1 << 20, 1 << 20, 1 << 20, 1 << 20, 1 << 20, 4096, 255, 4096);
    }
}

/// A mounted power-cut filesystem. Dropping it unmounts it (kill the host
/// using it first).
pub struct PowerCutFs {
    state: Arc<Mutex<State>>,
    _session: fuser::BackgroundSession,
}

impl PowerCutFs {
    /// Mount an empty filesystem at `path` (created if missing).
    pub fn mount(path: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(path)?;
        let state = Arc::new(Mutex::new(State::new()));
        let options = [MountOption::FSName("weir-powercut".into())];
        let session = fuser::spawn_mount2(Fs(state.clone()), path, &options)?;
        Ok(Self {
            state,
            _session: session,
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The power fails: every change from now on fails with `EIO` until
    /// [`PowerCutFs::cut`]. Kill the host next.
    pub fn freeze(&self) {
        self.state().frozen = true;
    }

    /// After [`PowerCutFs::freeze`] and the host's death: keep only what
    /// was made durable, then take changes again (the power is back).
    pub fn cut(&self) -> Lost {
        let mut s = self.state();
        let lost = s.cut();
        s.frozen = false;
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(s: &mut State, ino: u64, offset: u64, data: &[u8]) {
        s.write(ino, offset, data).unwrap();
    }

    /// Write `data` to a new synced file `tmp` and rename it over `a`, as
    /// an atomic file write does (without the directory sync).
    fn replace_a(s: &mut State, data: &[u8]) -> u64 {
        let new = s.add(ROOT, OsStr::new("tmp"), file_body(), 0o644).unwrap();
        write(s, new, 0, data);
        s.sync(new).unwrap();
        s.rename((ROOT, OsStr::new("tmp")), (ROOT, OsStr::new("a")), 0)
            .unwrap();
        new
    }

    /// A filesystem holding one file `f` with `data`, all synced.
    fn synced_file(data: &[u8]) -> (State, u64) {
        let mut s = State::new();
        let f = s.add(ROOT, OsStr::new("f"), file_body(), 0o644).unwrap();
        s.sync(ROOT).unwrap();
        write(&mut s, f, 0, data);
        s.sync(f).unwrap();
        (s, f)
    }

    fn read_all(s: &State, ino: u64) -> Vec<u8> {
        match &s.nodes[&ino].body {
            Body::File(f) => f.now.read(0, f.now.size),
            Body::Dir { .. } => panic!("a directory"),
        }
    }

    #[test]
    fn a_cut_keeps_synced_pages_and_size_and_drops_the_rest() {
        let (mut s, f) = synced_file(&[1; 5000]);
        write(&mut s, f, 100, &[2; 10]);
        write(&mut s, f, 9000, &[3; 10]);
        let lost = s.cut();
        assert_eq!(lost.sizes, 1);
        assert!(lost.pages >= 2, "{lost:?}");
        assert_eq!(read_all(&s, f), vec![1; 5000]);
    }

    #[test]
    fn a_cut_drops_entries_and_renames_not_followed_by_a_directory_sync() {
        let mut s = State::new();
        let old = s.add(ROOT, OsStr::new("a"), file_body(), 0o644).unwrap();
        write(&mut s, old, 0, b"old");
        s.sync(old).unwrap();
        s.sync(ROOT).unwrap();
        let new = replace_a(&mut s, b"new");
        assert_eq!(s.lookup(ROOT, OsStr::new("a")), Ok(new));
        assert_eq!(s.cut().dirs, 1);
        assert_eq!(s.lookup(ROOT, OsStr::new("a")), Ok(old));
        assert_eq!(read_all(&s, old), b"old");
        assert_eq!(s.lookup(ROOT, OsStr::new("tmp")), Err(ENOENT));
        assert!(!s.nodes.contains_key(&new), "the lost file is freed");
        // With the directory synced, the rename survives.
        let new = replace_a(&mut s, b"new");
        s.sync(ROOT).unwrap();
        assert_eq!(s.cut(), Lost::default());
        assert_eq!(read_all(&s, new), b"new");
    }

    #[test]
    fn a_frozen_filesystem_refuses_changes_until_the_cut() {
        let mut s = State::new();
        let f = s.add(ROOT, OsStr::new("f"), file_body(), 0o644).unwrap();
        s.frozen = true;
        assert_eq!(s.write(f, 0, b"x"), Err(EIO));
        assert_eq!(s.sync(f), Err(EIO));
        assert_eq!(s.add(ROOT, OsStr::new("g"), file_body(), 0o644), Err(EIO));
    }

    #[test]
    fn truncation_is_durable_only_after_a_sync() {
        let (mut s, f) = synced_file(&[7; 6000]);
        s.truncate(f, 10).unwrap();
        assert_eq!(read_all(&s, f), vec![7; 10]);
        s.cut();
        assert_eq!(read_all(&s, f), vec![7; 6000]);
        s.truncate(f, 10).unwrap();
        s.sync(f).unwrap();
        write(&mut s, f, 20, b"x");
        s.cut();
        assert_eq!(read_all(&s, f), vec![7; 10]);
    }
}
