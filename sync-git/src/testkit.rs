//! Real git repositories for tests, built with the `git` command line, and `git` itself as
//! the oracle (`git ls-tree -r -l -z`, `git cat-file --batch`).
//!
//! Enabled by the `testkit` feature. Workspace end-to-end tests and benchmarks use it too:
//!
//! ```toml
//! [dev-dependencies]
//! sync-git = { workspace = true, features = ["testkit"] }
//! ```
//!
//! Every `git` run is isolated from the machine: `HOME` and `XDG_CONFIG_HOME` point into
//! the repository's temporary directory, `GIT_CONFIG_NOSYSTEM=1`, author and committer are
//! fixed, and `GIT_DIR`-style variables of the caller are removed.
//!
//! ```
//! use sync_git::testkit::{TestRepo, expected_tree};
//!
//! let repo = TestRepo::new();
//! repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
//! repo.symlink("latest", "src/lib.rs");
//! let commit = repo.commit("first");
//! let tree = expected_tree(repo.path(), &commit);
//! assert_eq!(tree.len(), 2);
//! ```
//!
//! Helpers panic with git's own error output when a command fails: they are for tests.
#![allow(clippy::missing_panics_doc)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use std::sync::Arc;

use sync_core::testkit::{BuiltSource, History, SourceFixture, lost_blob};
use sync_core::{
    BlobId, CommitId, DEFAULT_MAX_FILE_SIZE, EntryKind, RepoPath, RepoSource, Tree, TreeEntry,
};

/// Environment variables of the caller that would redirect `git` elsewhere.
const LEAKY_VARS: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_AUTHOR_DATE",
    "GIT_COMMITTER_DATE",
];

/// A `git` command run in `dir`, isolated from the machine's configuration, with its
/// global configuration in `home`.
pub fn git_command(dir: &Path, home: &Path) -> Command {
    let mut cmd = Command::new("git");
    cmd.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_GLOBAL", home.join(".gitconfig"))
        .env("GIT_AUTHOR_NAME", "Sync Test")
        .env("GIT_AUTHOR_EMAIL", "sync-test@example.com")
        .env("GIT_COMMITTER_NAME", "Sync Test")
        .env("GIT_COMMITTER_EMAIL", "sync-test@example.com")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("LC_ALL", "C");
    for var in LEAKY_VARS {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` with `input` on stdin and returns its stdout; panics with its stderr on
/// failure.
pub fn run(mut cmd: Command, input: Option<&[u8]>) -> Vec<u8> {
    let out = output(&mut cmd, input);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn output(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (is git installed?)"));
    if let Some(input) = input {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        // Write on another thread: git may fill its stdout pipe before reading all input.
        let input = input.to_vec();
        let writer = std::thread::spawn(move || stdin.write_all(&input));
        let out = child.wait_with_output().expect("waiting for git");
        writer
            .join()
            .expect("stdin writer panicked")
            .unwrap_or_else(|e| panic!("writing to {cmd:?}: {e}"));
        out
    } else {
        child.wait_with_output().expect("waiting for git")
    }
}

/// A git repository in a temporary directory, removed on drop, with helpers that change
/// its index and commit it. Paths are repository paths (`/`-separated).
#[derive(Debug)]
pub struct TestRepo {
    dir: tempfile::TempDir,
    path: PathBuf,
    home: PathBuf,
}

impl Default for TestRepo {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRepo {
    /// A new repository with a work tree, on branch `main` (unborn until the first
    /// commit).
    pub fn new() -> Self {
        Self::init(false)
    }

    /// A new bare repository, `HEAD` at `main`.
    pub fn new_bare() -> Self {
        Self::init(true)
    }

    fn init(bare: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sync-git-test-")
            .tempdir()
            .expect("creating a temporary directory");
        let home = dir.path().join("home");
        std::fs::create_dir_all(&home).expect("creating the test HOME");
        let path = dir.path().join(if bare { "repo.git" } else { "repo" });
        let mut cmd = git_command(dir.path(), &home);
        cmd.args(["init", "-q", "-b", "main"]);
        if bare {
            cmd.arg("--bare");
        }
        cmd.arg(&path);
        run(cmd, None);
        Self { dir, path, home }
    }

    /// The work tree root, or the repository directory when bare.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The temporary directory holding the repository and its clones.
    pub fn temp_dir(&self) -> &Path {
        self.dir.path()
    }

    /// A `git` command in the repository.
    pub fn command(&self) -> Command {
        git_command(&self.path, &self.home)
    }

    /// Runs `git args…` and returns its stdout as text (trimmed).
    pub fn git<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        String::from_utf8_lossy(&run(cmd, None)).trim().to_owned()
    }

    /// Runs `git args…` with `input` on stdin and returns its raw stdout.
    pub fn git_input<I, S>(&self, args: I, input: &[u8]) -> Vec<u8>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        run(cmd, Some(input))
    }

    /// Runs `git args…` and returns its output whether or not it succeeded.
    pub fn try_git<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = self.command();
        cmd.args(args);
        output(&mut cmd, None)
    }

    fn work_path(&self, path: &str) -> PathBuf {
        path.split('/').fold(self.path.clone(), |p, c| p.join(c))
    }

    /// Writes a file in the work tree and stages it (`git add`).
    pub fn write(&self, path: &str, data: impl AsRef<[u8]>) -> &Self {
        let file = self.work_path(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).expect("creating directories");
        }
        std::fs::write(&file, data).expect("writing a file");
        self.git(["add", "--", path]);
        self
    }

    /// Writes many files in the work tree and stages them with one `git add` (paths taken
    /// literally): for fixtures of thousands of files, where [`write`](Self::write) would
    /// run `git` once a file.
    ///
    /// ```
    /// use sync_git::testkit::TestRepo;
    ///
    /// let repo = TestRepo::new();
    /// repo.write_all((0..3).map(|i| (format!("src/f{i}.rs"), format!("// {i}\n"))))
    ///     .write_all([(":notes.txt", "a leading colon, not pathspec magic\n")]);
    /// let commit = repo.commit("four files");
    /// let tree = repo.expected_tree(&commit);
    /// assert_eq!(tree.len(), 4);
    /// assert!(tree.entries().iter().any(|e| e.path.to_string() == ":notes.txt"));
    /// ```
    pub fn write_all<P, D>(&self, files: impl IntoIterator<Item = (P, D)>) -> &Self
    where
        P: AsRef<str>,
        D: AsRef<[u8]>,
    {
        let mut paths = Vec::new();
        for (path, data) in files {
            let path = path.as_ref();
            let file = self.work_path(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent).expect("creating directories");
            }
            std::fs::write(&file, data).expect("writing a file");
            paths.extend_from_slice(path.as_bytes());
            paths.push(0);
        }
        if !paths.is_empty() {
            self.git_input(
                [
                    "--literal-pathspecs",
                    "add",
                    "--pathspec-from-file=-",
                    "--pathspec-file-nul",
                ],
                &paths,
            );
        }
        self
    }

    /// Removes a file from the work tree and the index (`git rm`).
    pub fn remove(&self, path: &str) -> &Self {
        self.git(["rm", "-q", "--", path]);
        self
    }

    /// Renames a file (`git mv`).
    pub fn rename(&self, from: &str, to: &str) -> &Self {
        if let Some(parent) = self.work_path(to).parent() {
            std::fs::create_dir_all(parent).expect("creating directories");
        }
        self.git(["mv", "--", from, to]);
        self
    }

    /// Sets or clears the executable bit of a staged file (`git update-index --chmod`).
    pub fn set_executable(&self, path: &str, executable: bool) -> &Self {
        let flag = if executable {
            "--chmod=+x"
        } else {
            "--chmod=-x"
        };
        self.git(["update-index", flag, "--", path]);
        self
    }

    /// Writes `data` as a blob (`git hash-object -w`) and returns its id.
    pub fn hash_object(&self, data: &[u8]) -> BlobId {
        let out = self.git_input(["hash-object", "-w", "--stdin"], data);
        parse_id(&out)
    }

    /// Stages an entry of any mode and any path bytes (even non-UTF-8) with the given
    /// content, through `git update-index -z --index-info`. The work tree is not touched.
    pub fn stage_raw(&self, path: &[u8], mode: u32, data: &[u8]) -> &Self {
        let blob = self.hash_object(data);
        self.stage_id(path, mode, &blob.to_hex())
    }

    /// Stages an entry pointing at an object id as is (a submodule commit, for example).
    pub fn stage_id(&self, path: &[u8], mode: u32, id: &str) -> &Self {
        let mut line = format!("{mode:o} {id}\t").into_bytes();
        line.extend_from_slice(path);
        line.push(0);
        self.git_input(["update-index", "-z", "--index-info"], &line);
        self
    }

    /// Removes an entry of any path bytes from the index only.
    pub fn unstage_raw(&self, path: &[u8]) -> &Self {
        let mut line = path.to_vec();
        line.push(0);
        self.git_input(["update-index", "-z", "--force-remove", "--stdin"], &line);
        self
    }

    /// Stages a symbolic link at `path` pointing at `target` (mode `120000`; recorded as
    /// git records links, without creating one on disk).
    pub fn symlink(&self, path: &str, target: &str) -> &Self {
        self.stage_raw(path.as_bytes(), 0o120000, target.as_bytes())
    }

    /// Stages a submodule entry (mode `160000`) at `path` pointing at commit `commit`.
    pub fn submodule(&self, path: &str, commit: &CommitId) -> &Self {
        self.stage_id(path.as_bytes(), 0o160000, &commit.to_hex())
    }

    /// Commits the index (empty commits allowed) and returns the new commit.
    pub fn commit(&self, message: &str) -> CommitId {
        self.git([
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ]);
        self.rev_parse("HEAD")
    }

    /// The commit `rev` names (`git rev-parse --verify rev^{commit}`).
    pub fn rev_parse(&self, rev: &str) -> CommitId {
        let out = self.git(["rev-parse", "--verify", "-q", &format!("{rev}^{{commit}}")]);
        out.parse()
            .unwrap_or_else(|e| panic!("`git rev-parse {rev}` printed `{out}`: {e}"))
    }

    /// Creates `branch` at `HEAD` and switches to it.
    pub fn branch(&self, branch: &str) -> &Self {
        self.git(["checkout", "-q", "-b", branch]);
        self
    }

    /// Switches to an existing branch (`git checkout`).
    pub fn checkout(&self, rev: &str) -> &Self {
        self.git(["checkout", "-q", rev]);
        self
    }

    /// Clones this repository as a bare repository next to it and returns its path.
    pub fn clone_bare(&self, name: &str) -> PathBuf {
        let to = self.dir.path().join(name);
        let mut cmd = git_command(self.dir.path(), &self.home);
        cmd.args(["clone", "-q", "--bare", "--no-local"])
            .arg(&self.path)
            .arg(&to);
        run(cmd, None);
        to
    }

    /// Deletes the loose object `id` from the object database, as a damaged repository or
    /// an incomplete clone lacks one; trees naming it are untouched. Panics if the object
    /// is not loose (packed by [`gc`](Self::gc), say).
    pub fn delete_object(&self, id: &BlobId) -> &Self {
        let hex = id.to_hex();
        let rel = self.git([
            "rev-parse",
            "--git-path",
            &format!("objects/{}/{}", &hex[..2], &hex[2..]),
        ]);
        let file = self.path.join(rel);
        std::fs::remove_file(&file)
            .unwrap_or_else(|e| panic!("deleting the loose object {}: {e}", file.display()));
        assert!(
            !self.try_git(["cat-file", "-e", &hex]).status.success(),
            "object {hex} is still readable (is it packed too?)"
        );
        self
    }

    /// Packs every object (`git gc`), so that reads go through pack files and deltas.
    pub fn gc(&self) -> &Self {
        self.git(["gc", "-q", "--aggressive", "--prune=now"]);
        self
    }

    /// Feeds a `git fast-import` stream to the repository.
    pub fn fast_import(&self, stream: &[u8]) -> &Self {
        self.git_input(["fast-import", "--quiet", "--done"], stream);
        self
    }

    /// The oracle listing of a commit: `git ls-tree -r -l -z`.
    pub fn ls_tree(&self, commit: &CommitId) -> Vec<LsTreeEntry> {
        ls_tree(&self.path, commit)
    }

    /// The tree a source must return for `commit`, from `git ls-tree`.
    pub fn expected_tree(&self, commit: &CommitId) -> Tree {
        expected_tree(&self.path, commit)
    }

    /// The contents of blobs, from `git cat-file --batch`, in the order given.
    pub fn cat_blobs(&self, ids: &[BlobId]) -> Vec<Vec<u8>> {
        cat_blobs(&self.path, ids)
    }
}

/// The commit id submodule entries of a built [`History`] point at.
const HISTORY_SUBMODULE: &str = "0123456789abcdef0123456789abcdef01234567";

/// Builds a source conformance [`History`] in a new repository, without touching its work
/// tree: each commit's index is staged from scratch (any path bytes, any mode), written
/// with `git commit-tree` on top of its branch's previous commit, and its branch moved to
/// it. `HEAD` names `main`. The blob of [`History::lose`] is then deleted.
///
/// ```
/// use sync_git::testkit::build_history;
/// let (repo, commits) = build_history(&sync_core::testkit::history());
/// assert_eq!(commits.len(), 2);
/// assert_eq!(repo.rev_parse("dev"), commits[1]);
/// ```
pub fn build_history(history: &History) -> (TestRepo, Vec<CommitId>) {
    let repo = TestRepo::new();
    let mut commits = Vec::with_capacity(history.commits.len());
    for (i, c) in history.commits.iter().enumerate() {
        repo.git(["read-tree", "--empty"]);
        for f in &c.files {
            match f.kind() {
                Some(kind) => repo.stage_raw(f.path().as_bytes(), kind.git_mode(), f.data()),
                None => repo.stage_id(f.path().as_bytes(), 0o160000, HISTORY_SUBMODULE),
            };
        }
        let tree = repo.git(["write-tree"]);
        let branch = format!("refs/heads/{}", c.branch);
        let parent = repo.try_git(["rev-parse", "--verify", "-q", &branch]);
        let mut args = vec![
            "commit-tree".to_owned(),
            tree,
            "-m".to_owned(),
            format!("commit {i} on {}", c.branch),
        ];
        if parent.status.success() {
            args.push("-p".to_owned());
            args.push(String::from_utf8_lossy(&parent.stdout).trim().to_owned());
        }
        let commit = repo.git(&args);
        repo.git(["update-ref", &branch, &commit]);
        commits.push(
            commit
                .parse()
                .unwrap_or_else(|e| panic!("`git commit-tree` printed `{commit}`: {e}")),
        );
    }
    repo.git(["read-tree", "--empty"]);
    if let Some(blob) = lost_blob(history) {
        repo.delete_object(&blob);
    }
    (repo, commits)
}

/// The source conformance suite's fixture for [`GitSource`](crate::GitSource): each
/// history is built by [`build_history`] in its own repository.
///
/// ```no_run
/// sync_core::sync_source_conformance!(sync_git::testkit::GitFixture);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GitFixture;

#[sync_core::async_trait]
impl SourceFixture for GitFixture {
    fn loses_blobs(&self) -> bool {
        true
    }

    fn lists_changes(&self) -> bool {
        true
    }

    async fn build(&self, history: &History) -> BuiltSource {
        let history = history.clone();
        let (repo, commits) = tokio::task::spawn_blocking(move || build_history(&history))
            .await
            .expect("building the history");
        let source = crate::GitSource::open(repo.path()).expect("opening the built repository");
        BuiltSource {
            name: source.identity(),
            source: Arc::new(source),
            commits,
            guard: Box::new(repo),
        }
    }
}

/// A commit of the [standard history](standard_history), with what it exercises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The commit.
    pub commit: CommitId,
    /// The branch it was made on.
    pub branch: &'static str,
    /// What changed.
    pub label: &'static str,
}

/// Paths of the [standard history](standard_history) whose kind or size the default
/// [`FilePolicy`](sync_core::FilePolicy) treats specially.
pub mod paths {
    /// A binary file (NUL bytes), changed in a later commit.
    pub const BINARY: &str = "assets/logo.bin";
    /// A file larger than the default maximum file size.
    pub const LARGE: &str = "data/large.txt";
    /// A symbolic link to `README.md`.
    pub const SYMLINK: &str = "docs/readme-link";
    /// A submodule entry.
    pub const SUBMODULE: &str = "vendor/lib";
    /// A script whose executable bit is set, then cleared.
    pub const SCRIPT: &str = "scripts/run.sh";
    /// A path with spaces.
    pub const SPACES: &str = "dir with spaces/file name.txt";
    /// A path with non-ASCII characters.
    pub const UNICODE: &str = "unicode/héllo wörld ✓.md";
    /// A path whose name starts with a dash.
    pub const DASH: &str = "-leading-dash.txt";
}

/// Builds the standard history in a new repository and returns it with its commits in
/// order: adds, edits, a delete, a rename, an executable bit flipped on and off, a
/// symbolic link, a submodule entry, a binary file, a file above the default size limit,
/// paths with spaces, unicode and a leading dash, an empty commit, and a second branch
/// `feature` (whose commits are listed after those of `main`). `HEAD` is left on `main`.
pub fn standard_history() -> (TestRepo, Vec<Step>) {
    let repo = TestRepo::new();
    let mut steps = Vec::new();
    let step = |steps: &mut Vec<Step>, repo: &TestRepo, branch, label| {
        steps.push(Step {
            commit: repo.commit(label),
            branch,
            label,
        });
    };

    repo.write("README.md", "# Demo\n\nA project.\n")
        .write("src/lib.rs", lib_rs(1))
        .write("src/util.rs", "pub fn util() -> u8 { 7 }\n")
        .write("docs/guide.md", "# Guide\n\nRead me.\n")
        .write(paths::SCRIPT, "#!/bin/sh\necho run\n")
        .write(paths::BINARY, binary(1))
        .write(paths::SPACES, "spaces\n")
        .write(paths::UNICODE, "unicode ✓\n")
        .write(paths::DASH, "dash\n")
        .write("empty.txt", "");
    step(&mut steps, &repo, "main", "add files");

    repo.write("src/lib.rs", lib_rs(2))
        .write("src/new.rs", "pub fn new_fn() {}\n");
    step(&mut steps, &repo, "main", "edit and add");

    repo.remove("docs/guide.md");
    step(&mut steps, &repo, "main", "delete");

    repo.rename("src/util.rs", "src/helpers/util.rs");
    step(&mut steps, &repo, "main", "rename");

    repo.set_executable(paths::SCRIPT, true);
    step(&mut steps, &repo, "main", "executable bit on");

    repo.symlink(paths::SYMLINK, "../README.md");
    let first = steps[0].commit;
    repo.submodule(paths::SUBMODULE, &first);
    step(&mut steps, &repo, "main", "symlink and submodule");

    repo.write(paths::LARGE, large_text());
    step(&mut steps, &repo, "main", "large file");

    step(&mut steps, &repo, "main", "empty commit");

    repo.set_executable(paths::SCRIPT, false)
        .write(paths::BINARY, binary(2))
        .write("src/lib.rs", lib_rs(3));
    step(
        &mut steps,
        &repo,
        "main",
        "executable bit off, binary and source edited",
    );

    repo.branch("feature")
        .write("src/feature.rs", "pub fn feature() -> bool { true }\n")
        .write("README.md", "# Demo\n\nA project, with a feature.\n")
        .remove(paths::DASH);
    step(&mut steps, &repo, "feature", "feature branch");

    repo.rename("src/feature.rs", "src/feature/mod.rs");
    step(&mut steps, &repo, "feature", "feature rename");

    repo.checkout("main");
    (repo, steps)
}

/// A Rust source of a few dozen lines, different for each `version`.
pub fn lib_rs(version: u32) -> String {
    (0..40)
        .map(|i| format!("pub fn f{i:02}() -> u32 {{\n    {}\n}}\n\n", i * version))
        .collect()
}

/// Binary content (NUL bytes in the first 8000), different for each `version`.
pub fn binary(version: u8) -> Vec<u8> {
    let mut data = vec![0x89, b'P', b'N', b'G', 0, 0, 0, version];
    data.extend((0..=255u8).cycle().take(4000).map(|b| b ^ version));
    data
}

/// Text a little larger than [`DEFAULT_MAX_FILE_SIZE`].
pub fn large_text() -> Vec<u8> {
    let line = b"a line of a large text file that no sync should fetch\n";
    let lines = (DEFAULT_MAX_FILE_SIZE as usize / line.len()) + 10;
    line.repeat(lines)
}

/// A `git fast-import` stream of one commit on `main` with `files` small text files,
/// spread over nested directories (at most 64 entries per directory), like a large
/// repository. Every file has distinct content.
pub fn synthetic_import(files: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(files * 96);
    for i in 0..files {
        let data = format!("file {i}\nfn f{i}() -> usize {{ {i} }}\n");
        let _ = write!(out, "blob\nmark :{}\ndata {}\n{data}\n", i + 1, data.len());
    }
    let message = format!("{files} files");
    let _ = write!(
        out,
        "commit refs/heads/main\nmark :{}\ncommitter Sync Test <sync-test@example.com> 1700000000 +0000\ndata {}\n{message}\n",
        files + 1,
        message.len()
    );
    for i in 0..files {
        let _ = writeln!(out, "M 100644 :{} {}", i + 1, synthetic_path(i));
    }
    out.extend_from_slice(b"\ndone\n");
    out
}

/// The path of file `i` of [`synthetic_import`].
pub fn synthetic_path(i: usize) -> String {
    format!("d{:02}/s{:02}/f{i:06}.rs", (i / 4096) % 100, (i / 64) % 64)
}

/// A bare repository with one commit of `files` files on `main` (see
/// [`synthetic_import`]), packed as `git gc` packs it.
pub fn synthetic_repo(files: usize) -> TestRepo {
    let repo = TestRepo::new_bare();
    repo.fast_import(&synthetic_import(files));
    repo.git(["gc", "-q", "--prune=now"]);
    repo
}

/// One line of `git ls-tree -r -l -z`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LsTreeEntry {
    /// The mode, as git prints it.
    pub mode: u32,
    /// `blob` or `commit` (a submodule).
    pub object_type: String,
    /// The object id, in hex.
    pub id: String,
    /// The size of a blob; `None` for submodules.
    pub size: Option<u64>,
    /// The path bytes.
    pub path: Vec<u8>,
}

/// `git ls-tree -r -l -z <commit>` in the repository at `repo`, parsed.
pub fn ls_tree(repo: &Path, commit: &CommitId) -> Vec<LsTreeEntry> {
    let home = repo.join(".sync-test-home-unused");
    let mut cmd = git_command(repo, &home);
    cmd.args(["ls-tree", "-r", "-l", "-z", "--full-tree", &commit.to_hex()]);
    let out = run(cmd, None);
    out.split(|&b| b == 0)
        .filter(|line| !line.is_empty())
        .map(|line| {
            let tab = line
                .iter()
                .position(|&b| b == b'\t')
                .expect("ls-tree line has a tab");
            let head = String::from_utf8_lossy(&line[..tab]);
            let mut fields = head.split_whitespace();
            let mut next = || fields.next().expect("ls-tree line has four fields");
            let mode = u32::from_str_radix(next(), 8).expect("octal mode");
            let object_type = next().to_owned();
            let id = next().to_owned();
            let size = next().parse().ok();
            LsTreeEntry {
                mode,
                object_type,
                id,
                size,
                path: line[tab + 1..].to_vec(),
            }
        })
        .collect()
}

/// The tree a source must return for `commit` of the repository at `repo`: the blobs of
/// `git ls-tree -r -l`, with submodules counted.
pub fn expected_tree(repo: &Path, commit: &CommitId) -> Tree {
    let mut entries = Vec::new();
    let mut submodules = 0;
    for e in ls_tree(repo, commit) {
        if e.object_type == "commit" {
            submodules += 1;
            continue;
        }
        assert_eq!(e.object_type, "blob", "unexpected entry {e:?}");
        let kind = EntryKind::from_git_mode(e.mode)
            .unwrap_or_else(|| panic!("unexpected mode {:o} of {e:?}", e.mode));
        entries.push(TreeEntry::new(
            RepoPath::from_vec(e.path).expect("git paths are valid"),
            e.id.parse().expect("a blob id"),
            e.size.expect("blobs have a size"),
            kind,
        ));
    }
    Tree::new(entries)
        .expect("git trees have unique paths")
        .with_submodules(submodules)
}

/// The contents of blobs of the repository at `repo`, in the order given, from one
/// `git cat-file --batch`.
pub fn cat_blobs(repo: &Path, ids: &[BlobId]) -> Vec<Vec<u8>> {
    let home = repo.join(".sync-test-home-unused");
    let mut cmd = git_command(repo, &home);
    cmd.args(["cat-file", "--batch"]);
    let input: String = ids.iter().map(|id| format!("{id}\n")).collect();
    let out = run(cmd, Some(input.as_bytes()));
    let mut rest = &out[..];
    let mut blobs = Vec::with_capacity(ids.len());
    for id in ids {
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .expect("cat-file header");
        let header = String::from_utf8_lossy(&rest[..nl]).into_owned();
        let mut fields = header.split(' ');
        assert_eq!(fields.next(), Some(id.to_hex().as_str()), "{header}");
        assert_eq!(fields.next(), Some("blob"), "{header}");
        let size: usize = fields
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("cat-file header `{header}`"));
        let start = nl + 1;
        blobs.push(rest[start..start + size].to_vec());
        rest = &rest[start + size + 1..];
    }
    blobs
}

fn parse_id(out: &[u8]) -> BlobId {
    let text = String::from_utf8_lossy(out);
    text.trim()
        .parse()
        .unwrap_or_else(|e| panic!("git printed `{text}`, not an object id: {e}"))
}
