//! Supply-chain checks with `cargo deny` against `deny.toml`: licenses,
//! bans and sources (need only the lockfile and the registry cache), then
//! advisories (need the RustSec database, fetched from GitHub).
//!
//! Where GitHub is unreachable, advisories are checked against the last
//! fetched copy of the database with a warning, or skipped with a warning
//! when there is none; `WEIR_REQUIRE_ADVISORIES=1` (set it in CI) makes an
//! unreachable database an error.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::{cmd, tools};

/// Run every `cargo deny` check.
pub fn check(root: &Path) -> Result<()> {
    tools::ensure_cargo_deny()?;
    let mut offline = cmd::cargo(root);
    offline.args(["deny", "check", "licenses", "bans", "sources"]);
    cmd::run(&mut offline, "cargo deny check licenses bans sources")?;

    let required = std::env::var_os("WEIR_REQUIRE_ADVISORIES").is_some_and(|v| v == "1");
    let mut fetch = cmd::cargo(root);
    fetch.args(["deny", "fetch", "db"]);
    let fetched = fetch.status().is_ok_and(|s| s.success());
    if !fetched {
        if required {
            bail!("cannot fetch the RustSec advisory database (WEIR_REQUIRE_ADVISORIES=1)");
        }
        if !local_database_exists() {
            eprintln!(
                "warning: advisories NOT checked: the RustSec database cannot be fetched (is github.com reachable?) and there is no local copy; run `cargo xtask deny` where it is reachable"
            );
            return Ok(());
        }
        eprintln!(
            "warning: cannot fetch the RustSec advisory database; checking against the last fetched copy"
        );
    }
    let mut advisories = cmd::cargo(root);
    advisories.args(["deny", "check", "--disable-fetch", "advisories"]);
    cmd::run(&mut advisories, "cargo deny check advisories")
}

/// Whether cargo-deny fetched the database before: a clone under
/// `$CARGO_HOME/advisory-dbs` holding its `crates/` directory (a failed
/// fetch leaves only a lock file or an empty directory).
fn local_database_exists() -> bool {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    let Some(entries) = cargo_home.and_then(|h| std::fs::read_dir(h.join("advisory-dbs")).ok())
    else {
        return false;
    };
    entries
        .flatten()
        .any(|entry| entry.path().join("crates").is_dir())
}
