//! Durable to the platter: what the flusher does after sled's flush so
//! that a flushed write survives a power cut or kernel crash, not only a
//! killed process.
//!
//! sled 0.34.7's `flush` ends, on Linux, in `sync_file_range` over the log
//! range it wrote: the data reaches the device's queue, but neither the
//! file's metadata (a log that grew) nor the drive's write cache is made
//! durable; its real `fsync` runs from its own background thread about once
//! a second. Other files it writes (the `conf` file, blobs) it never syncs,
//! and it renames snapshots into place without syncing the directory. So
//! after every flush the [`Platter`] `fdatasync`s the log, syncs every file
//! that appeared since the last round (blobs, snapshots, `conf`), and
//! `fsync`s a directory whose entries changed: one `fdatasync` per
//! group-commit round when nothing else changed.
//!
//! [`Durability::ProcessCrashOnly`] skips this in flush rounds (the
//! behaviour before it existed) and syncs only on open, on
//! [`Store::flush`](super::Store::flush) (a topic declared, shutdown):
//! acknowledged writes survive a killed process, but a power cut or
//! kernel crash can lose those of the last second or so.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What an acknowledged write survives (`[store] durability`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// Every group-commit round ends in `fdatasync`/`fsync` of what it
    /// wrote: an acknowledged write survives a power cut or kernel crash.
    #[default]
    PowerCut,
    /// A round ends with sled's flush alone: an acknowledged write
    /// survives a killed process (the page cache keeps it), but a power cut
    /// or kernel crash can lose the writes acknowledged in the last second
    /// or so (sled `fsync`s its log about once a second), and the committed
    /// effects with them.
    ProcessCrashOnly,
}

/// sled's directory and the files in it known to be durable.
#[derive(Debug)]
pub(super) struct Platter {
    /// sled's log, synced every round.
    log: File,
    /// Per directory (the store's, its `blobs/`): the entries as of the
    /// last directory fsync.
    known: Vec<(PathBuf, BTreeSet<OsString>)>,
}

impl Platter {
    /// The platter of the sled store in `dir` (opened already). The first
    /// [`Platter::sync`] syncs every file there, and `dir`'s parent now.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            crate::datadir::sync_dir(parent)?;
        }
        Ok(Self {
            log: File::open(dir.join("db"))?,
            known: vec![
                (dir.to_path_buf(), BTreeSet::new()),
                (dir.join("blobs"), BTreeSet::new()),
            ],
        })
    }

    /// Make everything sled wrote so far durable: new files first, then
    /// the directories that changed, then the log.
    pub(super) fn sync(&mut self) -> io::Result<()> {
        for (dir, known) in &mut self.known {
            let mut now = BTreeSet::new();
            let entries = match std::fs::read_dir(&*dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in entries {
                let entry = entry?;
                let name = entry.file_name();
                if !known.contains(&name) && entry.file_type()?.is_file() {
                    sync_file(&entry.path())?;
                }
                now.insert(name);
            }
            if now != *known {
                crate::datadir::sync_dir(dir)?;
                *known = now;
            }
        }
        self.log.sync_data()
    }
}

/// `fsync` a file sled created; one removed meanwhile (an old snapshot)
/// needs nothing.
fn sync_file(path: &Path) -> io::Result<()> {
    match File::open(path) {
        Ok(f) => f.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}
