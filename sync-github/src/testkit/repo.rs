//! Real git repositories built with the `git` command line, isolated from the user's
//! configuration.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sync_core::{BlobId, CommitId, EntryKind, RepoPath, Tree, TreeEntry};

/// The environment every `git` of the testkit runs with: no system or global
/// configuration, a private `HOME`, a fixed identity and no prompts.
pub(crate) fn git_env(home: &Path) -> Vec<(&'static str, std::ffi::OsString)> {
    vec![
        ("HOME", home.as_os_str().to_owned()),
        ("XDG_CONFIG_HOME", home.join(".config").into_os_string()),
        ("GIT_CONFIG_NOSYSTEM", "1".into()),
        (
            "GIT_CONFIG_GLOBAL",
            home.join(".gitconfig").into_os_string(),
        ),
        ("GIT_TERMINAL_PROMPT", "0".into()),
        ("GIT_AUTHOR_NAME", "Fixture Author".into()),
        ("GIT_AUTHOR_EMAIL", "author@example.com".into()),
        ("GIT_COMMITTER_NAME", "Fixture Committer".into()),
        ("GIT_COMMITTER_EMAIL", "committer@example.com".into()),
        ("LC_ALL", "C".into()),
    ]
}

fn check(what: &str, output: Output) -> io::Result<Vec<u8>> {
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(io::Error::other(format!(
            "`git {what}` failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// A git repository with a work tree in a temporary directory, removed on drop.
///
/// ```no_run
/// use sync_github::testkit::TestRepo;
/// let repo = TestRepo::new()?;
/// repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")?;
/// repo.write_executable("run.sh", "#!/bin/sh\necho hi\n")?;
/// repo.symlink("latest", "src/lib.rs")?;
/// let commit = repo.commit("first")?;
/// assert_eq!(repo.tree(&commit)?.len(), 3);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct TestRepo {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    home: PathBuf,
}

impl TestRepo {
    /// An empty repository (no commits) whose branch `main` is unborn.
    pub fn new() -> io::Result<Self> {
        let tmp = tempfile::Builder::new().prefix("sync-github-").tempdir()?;
        let home = tmp.path().join("home");
        let dir = tmp.path().join("repo");
        std::fs::create_dir_all(&home)?;
        std::fs::create_dir_all(&dir)?;
        std::fs::write(home.join(".gitconfig"), "")?;
        let repo = Self {
            _tmp: tmp,
            dir,
            home,
        };
        repo.git(["init", "-q", "-b", "main"])?;
        for (key, value) in [
            ("core.autocrlf", "false"),
            ("core.symlinks", "true"),
            ("core.filemode", "true"),
            ("commit.gpgsign", "false"),
            ("gc.auto", "0"),
        ] {
            repo.git(["config", key, value])?;
        }
        Ok(repo)
    }

    /// The work tree (and the repository, in its `.git`).
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The private `HOME` git runs with.
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// Runs `git` in the repository; returns its standard output.
    pub fn git<I, S>(&self, args: I) -> io::Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let args: Vec<_> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        let what = args
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let output = Command::new("git")
            .arg("-C")
            .arg(&self.dir)
            .args(&args)
            .envs(git_env(&self.home))
            .output()?;
        check(&what, output)
    }

    fn file(&self, path: &str) -> io::Result<PathBuf> {
        let full = self.dir.join(path);
        if let Some(parent) = full.parent() {
            std::fs::create_dir_all(parent)?;
        }
        Ok(full)
    }

    /// Writes a regular file (mode `100644`), creating its directories. Changes are
    /// staged by [`commit`](Self::commit).
    pub fn write(&self, path: &str, content: impl AsRef<[u8]>) -> io::Result<()> {
        self.write_mode(path, content.as_ref(), 0o644)
    }

    /// Writes an executable file (mode `100755`).
    pub fn write_executable(&self, path: &str, content: impl AsRef<[u8]>) -> io::Result<()> {
        self.write_mode(path, content.as_ref(), 0o755)
    }

    fn write_mode(&self, path: &str, content: &[u8], mode: u32) -> io::Result<()> {
        let full = self.file(path)?;
        if full.is_symlink() {
            std::fs::remove_file(&full)?;
        }
        std::fs::write(&full, content)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&full, std::fs::Permissions::from_mode(mode))?;
        }
        #[cfg(not(unix))]
        let _ = mode;
        Ok(())
    }

    /// Creates a symbolic link (mode `120000`) whose target is `target`.
    pub fn symlink(&self, path: &str, target: &str) -> io::Result<()> {
        let full = self.file(path)?;
        if full.exists() || full.is_symlink() {
            std::fs::remove_file(&full)?;
        }
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(target, &full)
        }
        #[cfg(not(unix))]
        {
            let _ = target;
            Err(io::Error::other("symlinks need a Unix system"))
        }
    }

    /// Removes a file.
    pub fn remove(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(path))
    }

    /// Adds a submodule entry (a gitlink, mode `160000`) pointing at `commit`, left
    /// uninitialized (an empty directory) as after a clone without `--recurse-submodules`.
    pub fn submodule(&self, path: &str, commit: &str) -> io::Result<()> {
        std::fs::create_dir_all(self.dir.join(path))?;
        let info = format!("160000,{commit},{path}");
        self.git(["update-index", "--add", "--cacheinfo", info.as_str()])
            .map(drop)
    }

    /// Stages every change of the work tree and commits it on the current branch.
    pub fn commit(&self, message: &str) -> io::Result<CommitId> {
        self.git(["add", "-A", "--", "."])?;
        self.git([
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ])?;
        self.rev_parse("HEAD")
    }

    /// The commit a revision names.
    pub fn rev_parse(&self, rev: &str) -> io::Result<CommitId> {
        let spec = format!("{rev}^{{commit}}");
        let out = self.git(["rev-parse", "--verify", "-q", spec.as_str()])?;
        String::from_utf8_lossy(&out)
            .trim()
            .parse()
            .map_err(|e: sync_core::Error| io::Error::other(e.to_string()))
    }

    /// Points `branch` at `commit`, creating it if needed.
    pub fn branch(&self, branch: &str, commit: &CommitId) -> io::Result<()> {
        let sha = commit.to_string();
        self.git(["branch", "-f", branch, sha.as_str()]).map(drop)
    }

    /// Switches the work tree to `branch`, creating it at the current commit if needed.
    pub fn checkout(&self, branch: &str) -> io::Result<()> {
        let exists = self
            .git([
                "rev-parse",
                "--verify",
                "-q",
                &format!("refs/heads/{branch}"),
            ])
            .is_ok();
        if exists {
            self.git(["checkout", "-q", branch]).map(drop)
        } else {
            self.git(["checkout", "-q", "-b", branch]).map(drop)
        }
    }

    /// The oracle: the tree of `commit` as `git ls-tree -r -l` lists it, submodules
    /// counted, not listed.
    pub fn tree(&self, commit: &CommitId) -> io::Result<Tree> {
        let sha = commit.to_string();
        let out = self.git(["ls-tree", "-r", "-l", "-z", "--full-tree", sha.as_str()])?;
        let mut entries = Vec::new();
        let mut submodules = 0;
        for record in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
            let bad = || io::Error::other("unexpected `git ls-tree` output");
            let tab = record.iter().position(|&b| b == b'\t').ok_or_else(bad)?;
            let meta = std::str::from_utf8(&record[..tab]).map_err(|_| bad())?;
            let mut fields = meta.split_ascii_whitespace();
            let (Some(mode), Some(kind), Some(id), Some(size)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(bad());
            };
            if kind == "commit" {
                submodules += 1;
                continue;
            }
            let mode = u32::from_str_radix(mode, 8).map_err(|_| bad())?;
            let kind = EntryKind::from_git_mode(mode).ok_or_else(bad)?;
            let path = RepoPath::new(&record[tab + 1..]).map_err(|_| bad())?;
            let blob: BlobId = id.parse().map_err(|_| bad())?;
            let size = size.parse().map_err(|_| bad())?;
            entries.push(TreeEntry::new(path, blob, size, kind));
        }
        Tree::new(entries)
            .map(|t| t.with_submodules(submodules))
            .map_err(|e| io::Error::other(e.to_string()))
    }
}
