//! Running the `projsync` command line, and git's own answers to compare it with.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;
use sync_core::{CommitId, EntryKind};
use sync_git::testkit::{git_command, ls_tree, run};

/// The `projsync` command line of this build (this package's binary of `sync-cli`'s
/// program).
pub(crate) fn projsync_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_projsync-e2e"))
}

/// `run`'s arguments for a sync without vectors, for tests that are not about embeddings
/// (the default embedder, MiniLM, takes seconds per file on a CPU).
pub(crate) const NO_EMBEDDER: &[&str] = &["--embedder", "none"];

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

    /// Keeps repositories under `tenant` (through `PROJSYNC_TENANT`), so that tests sharing one
    /// server do not see each other.
    pub(crate) fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// The working directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `projsync --db <db> <args>`, waiting for it to end.
    pub(crate) fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).output().expect("projsync runs")
    }

    /// The command, not started.
    pub(crate) fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.bare_command();
        cmd.arg("--db").arg(&self.db).args(args);
        cmd
    }

    /// `projsync` in the working directory with a clean environment (no `PROJSYNC_*`,
    /// `GITHUB_*` variables but the tenant and `PROJSYNC_MODEL_DIR`), without arguments.
    /// The Hugging Face hub is off and its cache empty: tests never download a model.
    pub(crate) fn bare_command(&self) -> Command {
        let mut cmd = Command::new(projsync_bin());
        cmd.current_dir(self.dir.path())
            .env_remove("PROJSYNC_DB")
            .env_remove("PROJSYNC_SOURCE")
            .env_remove("PROJSYNC_TENANT")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .env_remove("PROJSYNC_EMBED_URL")
            .env_remove("OPENAI_API_KEY")
            .env_remove("PROJSYNC_TOKENS")
            .env("HF_HUB_OFFLINE", "1")
            .env("HF_HOME", self.dir.path().join("no-hf-home"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        if let Some(tenant) = &self.tenant {
            cmd.env("PROJSYNC_TENANT", tenant);
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
            "projsync {args:?} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// `projsync run --source SOURCE --branch B --json [extra…]`: the events, checked to
    /// end completed.
    pub(crate) fn sync_json(&self, source: &str, branch: &str, extra: &[&str]) -> Vec<Value> {
        let mut args = vec!["run", "--source", source, "--branch", branch, "--json"];
        args.extend_from_slice(extra);
        let events = json_lines(&self.ok(&args));
        let last = events.last().expect("events were printed");
        assert_eq!(last["event"], "completed", "{last}");
        events
    }

    /// `projsync ls -s SOURCE`.
    pub(crate) fn ls(&self, source: &str) -> Vec<u8> {
        self.ok(["ls", "-s", source])
    }

    /// `projsync ls -z -s SOURCE`.
    pub(crate) fn ls_z(&self, source: &str) -> Vec<u8> {
        self.ok(["ls", "-z", "-s", source])
    }

    /// `projsync history --json -s SOURCE`, newest first.
    pub(crate) fn history(&self, source: &str) -> Vec<Value> {
        json_lines(&self.ok(["history", "--json", "-s", source]))
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

/// What `projsync ls` must print for a commit: `git ls-tree -r -l` of its blobs and
/// symlinks (submodules are not indexed), as `path\tblob\tsize\tkind\n`, sorted by path
/// bytes, each path quoted as git itself quotes it (git's own output, not a copy of its
/// rules).
pub(crate) fn ls_oracle(repo: &Path, commit: &CommitId) -> Vec<u8> {
    oracle(repo, commit, b'\n', true)
}

/// What `projsync ls -z` must print for a commit: as [`ls_oracle`] with raw path bytes,
/// each record ending with NUL.
pub(crate) fn ls_oracle_z(repo: &Path, commit: &CommitId) -> Vec<u8> {
    oracle(repo, commit, 0, false)
}

fn oracle(repo: &Path, commit: &CommitId, end: u8, quoted: bool) -> Vec<u8> {
    let raw = ls_tree(repo, commit);
    // The same listing without -z: git quotes the paths (core.quotePath is on by default,
    // and the test git reads no configuration), in the same order.
    let home = repo.join(".sync-test-home-unused");
    let mut cmd = git_command(repo, &home);
    cmd.args(["ls-tree", "-r", "-l", "--full-tree", &commit.to_hex()]);
    let text = run(cmd, None);
    let git_quoted: Vec<&[u8]> = text
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let tab = l.iter().position(|&b| b == b'\t').expect("a tab");
            &l[tab + 1..]
        })
        .collect();
    assert_eq!(
        git_quoted.len(),
        raw.len(),
        "git listed the same entries twice"
    );
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> = raw
        .into_iter()
        .zip(git_quoted)
        .filter(|(e, _)| e.object_type == "blob")
        .map(|(e, quoted_path)| {
            let kind = EntryKind::from_git_mode(e.mode).expect("a blob mode");
            let size = e.size.expect("blobs have sizes");
            let shown = if quoted {
                quoted_path.to_vec()
            } else {
                e.path.clone()
            };
            let mut line = shown;
            line.extend_from_slice(format!("\t{}\t{size}\t{kind}", e.id).as_bytes());
            line.push(end);
            (e.path, line)
        })
        .collect();
    rows.sort();
    rows.into_iter().flat_map(|(_, line)| line).collect()
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

/// A running `projsync serve`, killed when dropped.
pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) base: String,
}

impl Server {
    /// Starts `projsync serve --listen 127.0.0.1:0 ARGS` and waits for its address.
    pub(crate) fn start(cli: &Cli, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut cmd = cli.command(["serve", "--listen", "127.0.0.1:0"]);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("projsync serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut line)
            .expect("reading the address");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        Self { child, base }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Stops the server; what it wrote on stderr.
    pub(crate) fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut err = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = stderr.read_to_string(&mut err);
        }
        err
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
