//! Running the `sync` command line, and git's own answers to compare it with.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sync_core::{CommitId, EntryKind};
use sync_git::testkit::ls_tree;

/// The `sync` command line of this build (this package's binary of the same program as
/// the `sync` example).
pub(crate) fn sync_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sync"))
}

/// A working directory and a SQLite store for command-line runs.
pub(crate) struct Cli {
    dir: tempfile::TempDir,
    db: String,
    tenant: Option<String>,
}

impl Cli {
    /// A fresh directory with `project-sync.db` as the store.
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let db = dir.path().join("project-sync.db").display().to_string();
        Self {
            dir,
            db,
            tenant: None,
        }
    }

    /// The same directory with another store (`sqlite://…`, `postgres://…`).
    pub(crate) fn with_db(db: impl Into<String>) -> Self {
        let mut cli = Self::new();
        cli.db = db.into();
        cli
    }

    /// Keeps repositories under `tenant` (through `SYNC_TENANT`), so that tests sharing one
    /// server do not see each other.
    pub(crate) fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The working directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `sync <args> --db <db>` (for the commands that take it), waiting for it to end.
    pub(crate) fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().expect("sync runs")
    }

    /// The command, not started.
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(sync_bin());
        cmd.current_dir(self.dir.path())
            .env_remove("SYNC_DB")
            .env_remove("SYNC_TENANT")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(tenant) = &self.tenant {
            cmd.env("SYNC_TENANT", tenant);
        }
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let takes_db = args
            .first()
            .is_some_and(|c| c != "branches" && c != "--help" && c != "--version");
        cmd.args(&args);
        if takes_db {
            cmd.args(["--db", &self.db]);
        }
        cmd
    }

    /// Runs and returns stdout, failing the test with stderr if the command failed.
    pub(crate) fn ok<I, S>(&self, args: I) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let out = self.run(&args);
        assert!(
            out.status.success(),
            "sync {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `sync run SOURCE --branch B --json [extra…]`: the events, checked to end completed.
    pub(crate) fn sync_json(&self, source: &str, branch: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["run", source, "--branch", branch, "--json"];
        args.extend_from_slice(extra);
        let events = json_lines(&self.ok(&args));
        let last = events.last().expect("events were printed");
        assert_eq!(last["event"], "completed", "{last}");
        events
    }

    /// `sync ls SOURCE`.
    pub(crate) fn ls(&self, source: &str) -> Vec<u8> {
        self.ok(["ls", source])
    }

    /// `sync history SOURCE --json`, newest first.
    pub(crate) fn history(&self, source: &str) -> Vec<Value> {
        json_lines(&self.ok(["history", source, "--json"]))
    }
}

/// One JSON value per line.
pub(crate) fn json_lines(out: &[u8]) -> Vec<Value> {
    out.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice(l)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(l)))
        })
        .collect()
}

/// What `sync ls` must print for a commit: `git ls-tree -r -l` of its blobs and symlinks
/// (submodules are not indexed), as `path\tblob\tsize\tkind`, sorted by path bytes.
pub(crate) fn ls_oracle(repo: &Path, commit: &CommitId) -> Vec<u8> {
    let mut rows: Vec<(Vec<u8>, String)> = ls_tree(repo, commit)
        .into_iter()
        .filter(|e| e.object_type == "blob")
        .map(|e| {
            let kind = EntryKind::from_git_mode(e.mode).expect("a blob mode");
            let size = e.size.expect("blobs have sizes");
            (e.path, format!("\t{}\t{size}\t{kind}\n", e.id))
        })
        .collect();
    rows.sort();
    rows.into_iter()
        .flat_map(|(path, rest)| [path, rest.into_bytes()].concat())
        .collect()
}

/// Shows two `ls` outputs as text for a failed comparison.
pub(crate) fn show(ls: &[u8]) -> String {
    String::from_utf8_lossy(ls).into_owned()
}

/// Points `branch` of the repository at `commit` (to sync historical commits in order).
pub(crate) fn point_branch(repo: &sync_git::testkit::TestRepo, branch: &str, commit: &CommitId) {
    repo.git([
        "update-ref",
        &format!("refs/heads/{branch}"),
        &commit.to_hex(),
    ]);
}

/// The Postgres server of the tests (`SYNC_TEST_POSTGRES_URL`, which `scripts/test` sets).
/// Locally, a test without one is skipped with a notice; with `CI=true` it fails.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("SYNC_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => panic!(
            "SYNC_TEST_POSTGRES_URL is not set but CI=true: Postgres tests must run in CI (scripts/test starts a server)"
        ),
        _ => {
            eprintln!(
                "SYNC_TEST_POSTGRES_URL is not set: this Postgres test is skipped (run scripts/test, or scripts/postgres start)"
            );
            None
        }
    }
}

/// A tenant name no other test run uses.
pub(crate) fn unique_tenant(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{label}-{}-{nanos}", std::process::id())
}
