//! The data directory: its format version (the `FORMAT` file), the one
//! way Weir writes a file that must survive a power cut, and the space
//! left on its filesystem ([`disk_space`]).
//!
//! Every file Weir writes (the `FORMAT` file, uploaded components and their
//! compiled artifacts) goes through [`write_atomic`]: write a temporary
//! file of its own, `fsync` it, rename it over the final name, `fsync` the
//! directory. A crash or power cut at any point leaves either the old file
//! or the new one under the final name, never a torn one, and once it
//! returns the new file survives a power cut. Directories Weir creates go
//! through [`create_dir`], which `fsync`s the parent so the new entry is
//! durable too. (sled's own files are made durable by the store's flusher,
//! `store/platter.rs`.)
//!
//! Format versions: [`open`] reads `FORMAT` (one number). A directory
//! without it but with a store was written before formats were recorded
//! and is format 1; a newer `weir` migrates an older format (logging that it
//! does), an older `weir` refuses a newer format instead of misreading it.

use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

/// The format this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// The name of the format file in the data directory.
pub const FORMAT_FILE: &str = "FORMAT";
/// The oldest format this build can migrate from.
const OLDEST_FORMAT: u32 = 1;

/// Why a data directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// Reading or writing a file failed.
    #[error("data directory: {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Written by a newer `weir`.
    #[error(
        "data directory {dir} has format {found}, written by a newer weir; this weir reads formats {OLDEST_FORMAT} to {FORMAT_VERSION}. Run the newer weir on it, or point --data-dir at another directory"
    )]
    TooNew {
        /// The data directory.
        dir: PathBuf,
        /// The format it records.
        found: u32,
    },
    /// The format file holds no number.
    #[error(
        "data directory {dir}: {FORMAT_FILE} holds {text:?}, not a format number; it should hold one line such as `{FORMAT_VERSION}`"
    )]
    BadFormatFile {
        /// The data directory.
        dir: PathBuf,
        /// What the file holds.
        text: String,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DataDirError + '_ {
    move |source| DataDirError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What [`open`] found in the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new directory, now recording [`FORMAT_VERSION`].
    Created,
    /// A directory of this format.
    Current,
    /// A directory of an older format (`None`: written before formats were
    /// recorded, which is format 1), migrated to [`FORMAT_VERSION`].
    Migrated {
        /// The format it had.
        from: Option<u32>,
    },
}

/// Open the data directory `dir`, creating it if missing: check its format
/// and migrate an older one, so that what follows reads
/// [`FORMAT_VERSION`]. `has_data` names an entry that only a used data
/// directory holds (the store's directory), to tell a directory written
/// before formats were recorded from a new one.
pub fn open(dir: &Path, has_data: &str) -> Result<Opened, DataDirError> {
    create_dir(dir).map_err(io_err(dir))?;
    let path = dir.join(FORMAT_FILE);
    let found = match fs::read_to_string(&path) {
        Ok(text) => Some(
            text.trim()
                .parse::<u32>()
                .map_err(|_| DataDirError::BadFormatFile {
                    dir: dir.to_path_buf(),
                    text: text.chars().take(40).collect(),
                })?,
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err(&path)(e)),
    };
    let opened = match found {
        Some(FORMAT_VERSION) => return Ok(Opened::Current),
        Some(v) if v > FORMAT_VERSION => {
            return Err(DataDirError::TooNew {
                dir: dir.to_path_buf(),
                found: v,
            });
        }
        Some(v) if v < OLDEST_FORMAT => {
            return Err(DataDirError::BadFormatFile {
                dir: dir.to_path_buf(),
                text: v.to_string(),
            });
        }
        None if !dir.join(has_data).exists() => Opened::Created,
        from => {
            migrate(dir, from.unwrap_or(1))?;
            Opened::Migrated { from }
        }
    };
    write_atomic(&path, format!("{FORMAT_VERSION}\n").as_bytes()).map_err(io_err(&path))?;
    Ok(opened)
}

/// Bring a directory of format `from` to [`FORMAT_VERSION`], one format at
/// a time. Format 1 is the first recorded (also every directory written
/// before formats were recorded). Format 2 changed the handler records
/// inside the store (specs gained `contracts`): no file changes here; the
/// records are rewritten once the store is open, by
/// `handlers::migrate_records`, which keeps its own marker in the store so
/// a crash between this and that still migrates them at the next start.
fn migrate(dir: &Path, from: u32) -> Result<(), DataDirError> {
    tracing::warn!(
        dir = %dir.display(),
        from,
        to = FORMAT_VERSION,
        "migrating the data directory to the current format"
    );
    Ok(())
}

/// Space on the filesystem holding a path, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiskSpace {
    /// Bytes an unprivileged writer (the host) can still use.
    pub free: u64,
    /// The filesystem's size.
    pub capacity: u64,
}

/// The space on the filesystem holding `path` (`statvfs`), for the
/// `weir_datadir_*_bytes` gauges.
pub fn disk_space(path: &Path) -> io::Result<DiskSpace> {
    let st = rustix::fs::statvfs(path).map_err(io::Error::from)?;
    Ok(DiskSpace {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        capacity: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

/// Write `bytes` to `path` so that a crash or power cut leaves the old
/// content or the new, and the new survives once this returns: a temporary
/// file unique to this call (concurrent writers of one path never share
/// one) in the same directory, `fsync`, rename over `path`, `fsync` the
/// directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = parent(path);
    let mut file = tempfile::Builder::new()
        .prefix(".weir-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|e| e.error)?;
    sync_dir(dir)
}

/// Create `dir` and its missing parents, `fsync`ing each parent that
/// gained an entry, so the new directories survive a power cut.
pub fn create_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(up) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        create_dir(up)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// `fsync` a directory: makes the entries created, renamed or removed in
/// it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_directory_records_the_current_format() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b/data");
        assert_eq!(open(&dir, "store").unwrap(), Opened::Created);
        let text = fs::read_to_string(dir.join(FORMAT_FILE)).unwrap();
        assert_eq!(text.trim(), FORMAT_VERSION.to_string());
        assert_eq!(open(&dir, "store").unwrap(), Opened::Current);
    }

    #[test]
    fn a_directory_without_format_but_with_data_is_format_1_and_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir(tmp.path().join("store")).unwrap();
        assert_eq!(
            open(tmp.path(), "store").unwrap(),
            Opened::Migrated { from: None }
        );
        assert_eq!(open(tmp.path(), "store").unwrap(), Opened::Current);
    }

    #[test]
    fn a_newer_format_is_refused_with_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let newer = FORMAT_VERSION + 1;
        fs::write(tmp.path().join(FORMAT_FILE), format!("{newer}\n")).unwrap();
        let err = open(tmp.path(), "store").unwrap_err().to_string();
        assert!(err.contains(&format!("has format {newer}")), "{err}");
        assert!(err.contains("written by a newer weir"), "{err}");
        // Refusing leaves the file alone.
        let text = fs::read_to_string(tmp.path().join(FORMAT_FILE)).unwrap();
        assert_eq!(text.trim(), newer.to_string());
    }

    #[test]
    fn a_format_file_without_a_number_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(FORMAT_FILE), "banana").unwrap();
        let err = open(tmp.path(), "store").unwrap_err().to_string();
        assert!(err.contains("not a format number"), "{err}");
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temporary_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }

    #[test]
    fn disk_space_reads_the_filesystem_of_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let space = disk_space(dir.path()).unwrap();
        assert!(space.capacity > 0, "{space:?}");
        assert!(space.free <= space.capacity, "{space:?}");
        assert!(disk_space(&dir.path().join("missing")).is_err());
    }
}
