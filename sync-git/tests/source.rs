//! `GitSource` against real repositories built with the `git` command line, with `git`
//! itself as the oracle.

use std::collections::BTreeMap;
use std::path::Path;

use futures::StreamExt;
use sync_core::{
    BlobId, Branch, CommitId, EntryKind, ErrorKind, RepoPath, RepoSource, Tree, TreeEntry,
};
use sync_git::GitSource;
use sync_git::testkit::{self, Step, TestRepo, paths, standard_history};

/// `contents` of every entry of `tree`, by path.
async fn read_all(
    source: &GitSource,
    commit: &CommitId,
    tree: &Tree,
) -> BTreeMap<RepoPath, Vec<u8>> {
    let mut stream = source.contents(commit, tree.entries().to_vec());
    let mut out = BTreeMap::new();
    while let Some(blob) = stream.next().await {
        let blob = blob.expect("reading a blob");
        let entry = tree.get(&blob.path).expect("a wanted path");
        assert_eq!(blob.id, entry.blob, "{}", blob.path);
        assert!(
            out.insert(blob.path.clone(), blob.data.to_vec()).is_none(),
            "{} yielded twice",
            blob.path
        );
    }
    out
}

/// Checks `tree()` against `git ls-tree` and `contents()` against `git cat-file` for a
/// commit of the repository at `repo_path`.
async fn check_commit(
    source: &GitSource,
    repo_path: &Path,
    commit: &CommitId,
    label: &str,
) -> Tree {
    let tree = source.tree(commit).await.expect("listing the tree");
    let expected = testkit::expected_tree(repo_path, commit);
    assert_eq!(tree, expected, "tree of `{label}` ({commit})");

    let contents = read_all(source, commit, &tree).await;
    assert_eq!(
        contents.len(),
        tree.len(),
        "every entry of `{label}` read once"
    );
    let ids: Vec<BlobId> = tree.entries().iter().map(|e| e.blob).collect();
    let oracle = testkit::cat_blobs(repo_path, &ids);
    for (entry, want) in tree.entries().iter().zip(oracle) {
        let got = &contents[&entry.path];
        assert_eq!(
            got.len() as u64,
            entry.size,
            "size of {} in `{label}`",
            entry.path
        );
        assert!(*got == want, "content of {} in `{label}`", entry.path);
        assert_eq!(BlobId::for_content(got), entry.blob, "{}", entry.path);
    }
    tree
}

async fn check_history(source: &GitSource, repo_path: &Path, steps: &[Step]) {
    for step in steps {
        check_commit(source, repo_path, &step.commit, step.label).await;
    }
}

fn path(p: &str) -> RepoPath {
    RepoPath::new(p).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_commit_matches_ls_tree_and_cat_file() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    check_history(&source, repo.path(), &steps).await;

    // The history exercises what it says it does.
    let at = |label: &str| steps.iter().find(|s| s.label == label).unwrap().commit;
    let first = source.tree(&at("add files")).await.unwrap();
    assert_eq!(first.get(&path("empty.txt")).unwrap().size, 0);
    assert_eq!(
        first.get(&path(paths::SCRIPT)).unwrap().kind,
        EntryKind::File
    );
    for p in [paths::SPACES, paths::UNICODE, paths::DASH, paths::BINARY] {
        assert!(first.get(&path(p)).is_some(), "{p}");
    }
    let exec = source.tree(&at("executable bit on")).await.unwrap();
    assert_eq!(
        exec.get(&path(paths::SCRIPT)).unwrap().kind,
        EntryKind::Executable
    );
    let links = source.tree(&at("symlink and submodule")).await.unwrap();
    let link = links.get(&path(paths::SYMLINK)).unwrap();
    assert_eq!(link.kind, EntryKind::Symlink);
    assert_eq!(link.blob, BlobId::for_content(b"../README.md"));
    assert_eq!(links.submodules(), 1);
    assert!(
        links.get(&path(paths::SUBMODULE)).is_none(),
        "submodules are not entries"
    );
    let large = source.tree(&at("large file")).await.unwrap();
    assert!(large.get(&path(paths::LARGE)).unwrap().size > sync_core::DEFAULT_MAX_FILE_SIZE);
    assert_eq!(
        source.tree(&at("empty commit")).await.unwrap(),
        large,
        "an empty commit has its parent's tree"
    );
    let off = source
        .tree(&at("executable bit off, binary and source edited"))
        .await
        .unwrap();
    assert_eq!(off.get(&path(paths::SCRIPT)).unwrap().kind, EntryKind::File);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packed_objects_and_deltas_match_git() {
    let (repo, steps) = standard_history();
    repo.gc();
    let packs = std::fs::read_dir(repo.path().join(".git/objects/pack"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("pack".as_ref()))
        .count();
    assert!(packs >= 1, "gc wrote a pack");
    let source = GitSource::open(repo.path()).unwrap();
    check_history(&source, repo.path(), &steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_clone_syncs_identically() {
    let (repo, steps) = standard_history();
    let bare = repo.clone_bare("clone.git");
    let source = GitSource::open(&bare).unwrap();
    assert!(source.is_bare());
    assert_eq!(
        source.identity(),
        format!("git:{}", std::fs::canonicalize(&bare).unwrap().display())
    );
    assert_eq!(source.default_branch().await.unwrap(), "main");
    let work = GitSource::open(repo.path()).unwrap();
    assert!(!work.is_bare());
    assert_eq!(
        source.branches().await.unwrap(),
        work.branches().await.unwrap()
    );
    check_history(&source, &bare, &steps).await;
    for step in &steps {
        assert_eq!(
            source.tree(&step.commit).await.unwrap(),
            work.tree(&step.commit).await.unwrap()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_are_local_sorted_with_heads() {
    let (repo, steps) = standard_history();
    repo.git(["branch", "zeta", &steps[1].commit.to_hex()]);
    repo.git(["branch", "a/nested", &steps[0].commit.to_hex()]);
    repo.git([
        "update-ref",
        "refs/remotes/origin/main",
        &steps[0].commit.to_hex(),
    ]);
    repo.git(["tag", "-a", "-m", "v1", "v1", &steps[2].commit.to_hex()]);
    // Packed references are read like loose ones.
    repo.git(["pack-refs", "--all"]);
    repo.git(["branch", "loose", &steps[3].commit.to_hex()]);

    let source = GitSource::open(repo.path()).unwrap();
    let branches = source.branches().await.unwrap();
    let names: Vec<_> = branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["a/nested", "feature", "loose", "main", "zeta"]);
    for Branch { name, commit } in &branches {
        assert_eq!(
            *commit,
            repo.rev_parse(&format!("refs/heads/{name}")),
            "{name}"
        );
        assert_eq!(source.head(name).await.unwrap(), *commit, "{name}");
    }
    assert_eq!(
        source.head("refs/heads/main").await.unwrap(),
        repo.rev_parse("main"),
        "a full reference name is accepted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_branch_follows_head() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    assert_eq!(source.default_branch().await.unwrap(), "main");
    repo.checkout("feature");
    assert_eq!(
        source.default_branch().await.unwrap(),
        "feature",
        "read live"
    );
    assert_eq!(
        source.head("feature").await.unwrap(),
        steps.last().unwrap().commit
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_head_asks_for_a_branch() {
    let (repo, steps) = standard_history();
    repo.git(["checkout", "-q", "--detach", &steps[2].commit.to_hex()]);
    let source = GitSource::open(repo.path()).unwrap();
    let err = source.default_branch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("detached"), "{msg}");
    assert!(msg.contains(&steps[2].commit.to_hex()), "{msg}");
    assert!(msg.contains("pass the branch"), "{msg}");
    // Branches still resolve.
    assert_eq!(source.head("main").await.unwrap(), repo.rev_parse("main"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unborn_branch_asks_for_a_branch() {
    let repo = TestRepo::new();
    let source = GitSource::open(repo.path()).unwrap();
    let err = source.default_branch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("refs/heads/main") && msg.contains("no commit"),
        "{msg}"
    );
    assert!(msg.contains("pass another branch"), "{msg}");
    assert!(source.branches().await.unwrap().is_empty());
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("no branches"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_branch_names_branch_repository_and_alternatives() {
    let (repo, _) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    let err = source.head("nope").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains("`nope`"), "{msg}");
    assert!(msg.contains(&source.identity()), "{msg}");
    assert!(msg.contains("`main`") && msg.contains("`feature`"), "{msg}");

    for i in 0..6 {
        repo.git(["branch", &format!("more-{i}")]);
    }
    let msg = source.head("nope").await.unwrap_err().to_string();
    assert!(msg.contains("`more-2` and 3 more"), "{msg}");
    assert!(!msg.contains("more-3"), "{msg}");

    for bad in ["", "a..b", "bad name", "trailing/"] {
        let err = source.head(bad).await.unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::InvalidInput | ErrorKind::NotFound),
            "`{bad}`: {err}"
        );
    }
    let err = source.head("a..b").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commit_is_not_found() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    let unknown: CommitId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
    let err = source.tree(&unknown).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&unknown.to_hex()), "{err}");
    assert!(err.to_string().contains(&source.identity()), "{err}");

    // An object that is not a commit.
    let readme = source.tree(&steps[0].commit).await.unwrap();
    let blob = readme.get(&path("README.md")).unwrap().blob;
    let not_commit = CommitId::from_bytes(*blob.as_bytes());
    let err = source.tree(&not_commit).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("not a commit"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_blob_is_not_found_and_ends_the_stream() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    let tree = source.tree(&steps[0].commit).await.unwrap();
    let ghost = TreeEntry::new(
        path("ghost.txt"),
        BlobId::for_content(b"never written"),
        13,
        EntryKind::File,
    );
    let wanted = vec![tree.entries()[0].clone(), ghost, tree.entries()[1].clone()];
    let items: Vec<_> = source.contents(&steps[0].commit, wanted).collect().await;
    assert_eq!(items.len(), 2, "the stream ends at the first error");
    assert!(items[0].is_ok());
    let err = items[1].as_ref().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("ghost.txt"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contents_yields_each_wanted_entry_even_for_shared_blobs() {
    let repo = TestRepo::new();
    repo.write("a.txt", "same\n").write("b/c.txt", "same\n");
    let commit = repo.commit("twins");
    let source = GitSource::open(repo.path()).unwrap();
    let tree = source.tree(&commit).await.unwrap();
    assert_eq!(tree.entries()[0].blob, tree.entries()[1].blob);
    let contents = read_all(&source, &commit, &tree).await;
    assert_eq!(contents.len(), 2);
    assert!(contents.values().all(|d| d == b"same\n"));
    assert!(
        source.contents(&commit, Vec::new()).next().await.is_none(),
        "nothing wanted, nothing yielded"
    );
}

#[test]
fn contents_never_blocks_a_current_thread_runtime() {
    let (repo, steps) = standard_history();
    let source = GitSource::builder(repo.path())
        .read_ahead(1)
        .open()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let commit = steps.last().unwrap().commit;
        let tree = source.tree(&commit).await.unwrap();
        // A slow consumer on the only runtime thread: the reader waits for it.
        let mut stream = source.contents(&commit, tree.entries().to_vec());
        let mut n = 0;
        while let Some(blob) = stream.next().await {
            blob.unwrap();
            tokio::task::yield_now().await;
            n += 1;
        }
        assert_eq!(n, tree.len());

        // Dropping a stream half-way stops its reader; the source keeps working.
        let mut stream = source.contents(&commit, tree.entries().to_vec());
        stream.next().await.unwrap().unwrap();
        drop(stream);
        assert_eq!(source.tree(&commit).await.unwrap(), tree);
    });
}

#[test]
fn works_without_a_tokio_runtime() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    futures::executor::block_on(async {
        assert_eq!(source.default_branch().await.unwrap(), "main");
        let commit = source.head("main").await.unwrap();
        assert_eq!(commit, steps[8].commit);
        let tree = source.tree(&commit).await.unwrap();
        let contents = read_all(&source, &commit, &tree).await;
        assert_eq!(contents.len(), tree.len());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_discovers_upwards_and_rejects_non_repositories() {
    let (repo, _) = standard_history();
    let root = std::fs::canonicalize(repo.path()).unwrap();
    let source = GitSource::open(repo.path()).unwrap();
    assert_eq!(source.identity(), format!("git:{}", root.display()));
    assert_eq!(source.identity_path(), root);

    // From inside the work tree, and through a path with `..`.
    let inside = repo.path().join("src");
    let found = GitSource::open(&inside).unwrap();
    assert_eq!(found.identity(), source.identity());
    let dotted = repo.path().join("src").join("..").join("unicode");
    assert_eq!(
        GitSource::open(&dotted).unwrap().identity(),
        source.identity()
    );
    // The `.git` directory itself names the same repository.
    assert_eq!(
        GitSource::builder(repo.path().join(".git"))
            .discover(false)
            .open()
            .unwrap()
            .identity(),
        source.identity()
    );

    // Without discovery a subdirectory is not a repository.
    let err = GitSource::builder(&inside)
        .discover(false)
        .open()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("no git repository at"), "{err}");

    // A directory outside any repository.
    let empty = tempfile::tempdir().unwrap();
    let err = GitSource::open(empty.path()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let msg = err.to_string();
    assert!(msg.contains(&empty.path().display().to_string()), "{msg}");
    assert!(msg.contains("no git repository at or above"), "{msg}");

    // A path that does not exist.
    let err = GitSource::open(empty.path().join("missing")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_utf8_paths_are_kept_as_bytes() {
    let repo = TestRepo::new();
    let raw: &[u8] = b"raw/caf\xe9 \xff.txt";
    repo.write("plain.txt", "plain\n")
        .stage_raw(raw, 0o100644, b"latin-1 name\n")
        .stage_raw(b"raw/\xc3\x28/x", 0o100755, b"#!/bin/sh\n");
    let commit = repo.commit("non-UTF-8 paths");
    let source = GitSource::open(repo.path()).unwrap();
    let tree = check_commit(&source, repo.path(), &commit, "non-UTF-8 paths").await;
    let entry = tree.get(&RepoPath::new(raw).unwrap()).unwrap();
    assert!(entry.path.to_str().is_none());
    assert_eq!(entry.kind, EntryKind::File);
    assert_eq!(tree.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn legacy_group_writable_mode_reads_as_a_file() {
    // Old git wrote 100664 for group-writable files; git reads it as 100644. Such a tree
    // can only be written literally.
    let repo = TestRepo::new();
    let blob = repo.hash_object(b"old\n");
    let mut tree = b"100664 old.txt\0".to_vec();
    tree.extend_from_slice(blob.as_bytes());
    let out = repo.git_input(
        ["hash-object", "-t", "tree", "-w", "--literally", "--stdin"],
        &tree,
    );
    let tree_id = String::from_utf8(out).unwrap().trim().to_owned();
    let commit = repo.git(["commit-tree", &tree_id, "-m", "legacy mode"]);
    let commit: CommitId = commit.parse().unwrap();
    let source = GitSource::open(repo.path()).unwrap();
    let listed = check_commit(&source, repo.path(), &commit, "legacy mode").await;
    assert_eq!(listed.entries()[0].kind, EntryKind::File);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_repositories_are_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = testkit::git_command(dir.path(), &home);
    cmd.args(["init", "-q", "--object-format=sha256", "sha256"]);
    testkit::run(cmd, None);
    let err = GitSource::open(dir.path().join("sha256")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.to_string().contains("SHA-256"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tree_matches_git_with_any_number_of_threads() {
    let files = 10_000;
    let repo = testkit::synthetic_repo(files);
    let source = GitSource::builder(repo.path()).threads(3).open().unwrap();
    assert!(source.is_bare());
    let commit = source
        .head(&source.default_branch().await.unwrap())
        .await
        .unwrap();
    let tree = check_commit(&source, repo.path(), &commit, "synthetic").await;
    assert_eq!(tree.len(), files);
    assert_eq!(
        tree.entries()[0].path,
        path(&testkit::synthetic_path(0)),
        "paths as generated"
    );
    let single = GitSource::builder(repo.path()).threads(1).open().unwrap();
    assert_eq!(single.tree(&commit).await.unwrap(), tree);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linked_work_tree_has_its_own_identity_and_head() {
    let (repo, steps) = standard_history();
    let linked = repo.temp_dir().join("linked");
    let at = steps[1].commit.to_hex();
    repo.git([
        "worktree",
        "add",
        "-q",
        "-b",
        "side",
        linked.to_str().unwrap(),
        &at,
    ]);
    let source = GitSource::open(linked.join("src")).unwrap();
    assert_eq!(
        source.identity(),
        format!("git:{}", std::fs::canonicalize(&linked).unwrap().display())
    );
    assert_ne!(
        source.identity(),
        GitSource::open(repo.path()).unwrap().identity()
    );
    assert_eq!(source.default_branch().await.unwrap(), "side");
    let names: Vec<_> = source
        .branches()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(names, ["feature", "main", "side"], "branches are shared");
    check_commit(&source, repo.path(), &steps[1].commit, "linked").await;
}

/// `changes` lists exactly what `git diff-tree -r` lists between two commits, with sizes
/// for the new admitted blobs only: a new blob at an excluded path is never read, so its
/// object may be missing; the same blob at an admitted path is `NotFound`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_read_sizes_of_new_admitted_blobs_only() {
    use sync_core::{FilePolicy, TreeChanges, TreeItem};

    let repo = TestRepo::new();
    repo.write("README.md", "# hello\n")
        .write("src/a.rs", "pub fn a() {}\n")
        .write("src/b.rs", "pub fn b() {}\n");
    let base = repo.commit("base");
    repo.write("src/a.rs", "pub fn a() { 1 }\n");
    repo.remove("src/b.rs");
    let missing = repo.hash_object(b"a vendored blob that is gone\n");
    repo.stage_raw(
        b"vendor/gone.rs",
        0o100644,
        b"a vendored blob that is gone\n",
    );
    let head = repo.commit("head");
    repo.delete_object(&missing);

    let source = GitSource::open(repo.path()).unwrap();
    let policy = FilePolicy::builder().exclude("vendor/**").build().unwrap();
    let TreeChanges::Listed(mut changes) = source.changes(&base, &head, &policy).await.unwrap()
    else {
        panic!("both commits are in the repository");
    };
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    let listed: Vec<(String, bool, Option<u64>)> = changes
        .iter()
        .map(|c| {
            let size = match c.after {
                Some(TreeItem::Blob { size, .. }) => size,
                _ => None,
            };
            (c.path.to_string(), c.before.is_some(), size)
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("src/a.rs".to_owned(), true, Some(17)),
            ("src/b.rs".to_owned(), true, None),
            ("vendor/gone.rs".to_owned(), false, None),
        ]
    );
    let diff_tree = repo.git([
        "diff-tree",
        "-r",
        "--name-only",
        &base.to_hex(),
        &head.to_hex(),
    ]);
    let git_paths: Vec<&str> = diff_tree.lines().collect();
    let our_paths: Vec<&str> = listed.iter().map(|(p, ..)| p.as_str()).collect();
    assert_eq!(our_paths, git_paths, "the same paths as `git diff-tree -r`");

    let everything = FilePolicy::default();
    let err = source.changes(&base, &head, &everything).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("vendor/gone.rs"), "{err}");

    let unknown = CommitId::from_bytes([7; 20]);
    assert!(matches!(
        source.changes(&unknown, &head, &policy).await.unwrap(),
        TreeChanges::Unavailable { .. }
    ));
    let err = source.changes(&base, &unknown, &policy).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
