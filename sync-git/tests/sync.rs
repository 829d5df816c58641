//! The sync pipeline end to end over a `GitSource`: after every commit of a real history,
//! the store's file index is exactly `git ls-tree -r -l` of that commit.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::Arc;

use sync_core::{
    CommitId, EntryQuery, ErrorKind, FilePolicy, IndexedFile, MemoryStore, RepoSource, SkipReason,
    SyncStatus, SyncStore, Syncer,
};
use sync_git::GitSource;
use sync_git::testkit::{self, Step, TestRepo, standard_history};

/// The index a sync with the default policy must leave for `step`: every blob of
/// `git ls-tree`, with the reason it has no entries.
fn expected_index(repo: &Path, step: &Step) -> Vec<IndexedFile> {
    expected_index_of(repo, &step.commit)
}

/// [`expected_index`] of any commit.
fn expected_index_of(repo: &Path, commit: &CommitId) -> Vec<IndexedFile> {
    let tree = testkit::expected_tree(repo, commit);
    let ids: Vec<_> = tree.entries().iter().map(|e| e.blob).collect();
    let contents = testkit::cat_blobs(repo, &ids);
    let policy = FilePolicy::default();
    tree.into_entries()
        .into_iter()
        .zip(contents)
        .map(|(entry, data)| {
            let skip = if entry.kind == sync_core::EntryKind::Symlink {
                Some(SkipReason::Symlink)
            } else if entry.size > policy.max_file_size() {
                Some(SkipReason::TooLarge)
            } else if FilePolicy::is_binary(&data) {
                Some(SkipReason::Binary)
            } else {
                None
            };
            IndexedFile::new(entry, skip)
        })
        .collect()
}

/// Syncs every step in order through a branch moved to each commit, checking the index
/// after each; returns the store.
async fn sync_history(source: GitSource, repo: &Path, steps: &[Step]) -> Arc<MemoryStore> {
    let store = Arc::new(MemoryStore::new());
    let syncer = Syncer::new(Arc::new(source), store.clone()).unwrap();
    let mut kinds_seen = HashSet::new();
    for step in steps {
        let mut update = testkit::git_command(repo, &repo.join("unused-home"));
        update.args(["update-ref", "refs/heads/sync", &step.commit.to_hex()]);
        testkit::run(update, None);
        let record = syncer.sync(Some("sync")).await.unwrap();
        assert_eq!(record.status, SyncStatus::Completed, "{}", step.label);
        assert_eq!(record.commit, step.commit, "{}", step.label);

        let expected = expected_index(repo, step);
        let index = store.file_index(syncer.repo()).await.unwrap();
        assert_eq!(
            index.files(),
            expected.as_slice(),
            "index after `{}`",
            step.label
        );
        kinds_seen.extend(expected.iter().map(|f| f.skip));

        let tree = testkit::expected_tree(repo, &step.commit);
        assert_eq!(record.stats.submodules, tree.submodules(), "{}", step.label);

        // Active entries come only from files that have content, at their current blob.
        let entries = store
            .entries(syncer.repo(), &EntryQuery::active())
            .await
            .unwrap();
        for entry in &entries {
            let file = index.get(&entry.path).expect("an indexed path");
            assert_eq!(file.skip, None, "{} has entries", entry.path);
            assert_eq!(file.entry.blob, entry.blob, "{}", entry.path);
        }
        let with_entries: BTreeSet<_> = entries.iter().map(|e| &e.path).collect();
        assert!(
            with_entries.contains(&sync_core::RepoPath::new("src/lib.rs").unwrap()),
            "{}",
            step.label
        );
    }
    // The history exercised every skip reason and plain files.
    assert_eq!(
        kinds_seen,
        HashSet::from([
            None,
            Some(SkipReason::Binary),
            Some(SkipReason::Symlink),
            Some(SkipReason::TooLarge)
        ])
    );

    // Syncing the same commit again reads no blob.
    let again = syncer.sync(Some("sync")).await.unwrap();
    assert_eq!(again.stats.blobs_fetched, 0);
    assert_eq!(
        again.stats.added + again.stats.modified + again.stats.deleted,
        0
    );
    store
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncing_every_commit_mirrors_ls_tree() {
    let (repo, steps) = standard_history();
    let source = GitSource::open(repo.path()).unwrap();
    sync_history(source, repo.path(), &steps).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bare_clone_and_work_tree_sync_to_the_same_index() {
    let (repo, steps) = standard_history();
    repo.gc();
    let bare = repo.clone_bare("mirror.git");

    let work = GitSource::open(repo.path()).unwrap();
    let work_key = sync_core::RepoKey::new(work.identity()).unwrap();
    let work_store = sync_history(work, repo.path(), &steps).await;

    let mirror = GitSource::open(&bare).unwrap();
    let mirror_key = sync_core::RepoKey::new(mirror.identity()).unwrap();
    assert_ne!(work_key, mirror_key, "two repositories, two identities");
    let mirror_store = sync_history(mirror, &bare, &steps).await;

    assert_eq!(
        work_store.file_index(&work_key).await.unwrap(),
        mirror_store.file_index(&mirror_key).await.unwrap()
    );
}

/// A repository whose `HEAD` references a blob absent from the object database (as the
/// u-boot repository's `HEAD` does): a sync that excludes the path never reads the object
/// and mirrors the rest of the tree; a sync that includes it fails with `NotFound` naming
/// the path, and leaves nothing behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_excluded_missing_blob_is_never_read() {
    let repo = TestRepo::new();
    repo.write("README.md", "# hello\n")
        .write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")
        .write("broken/missing.txt", "this blob is deleted below\n");
    let commit = repo.commit("first");
    let missing = "broken/missing.txt";
    let expected: Vec<IndexedFile> = expected_index_of(repo.path(), &commit)
        .into_iter()
        .filter(|f| f.entry.path.as_bytes() != missing.as_bytes())
        .collect();
    assert_eq!(expected.len(), 2);

    let id = repo.git(["rev-parse", &format!("HEAD:{missing}")]);
    repo.delete_object(&id.parse().unwrap());

    let source = Arc::new(GitSource::open(repo.path()).unwrap());
    let store = Arc::new(MemoryStore::new());
    let policy = FilePolicy::builder().exclude("broken/**").build().unwrap();
    let syncer = Syncer::new(source.clone(), store.clone())
        .unwrap()
        .with_policy(policy);
    let record = syncer
        .sync(Some("main"))
        .await
        .expect("the excluded blob is never read");
    assert_eq!(record.stats.excluded, 1);
    let index = store.file_index(syncer.repo()).await.unwrap();
    assert_eq!(index.files(), expected.as_slice());

    let store = Arc::new(MemoryStore::new());
    let syncer = Syncer::new(source, store.clone()).unwrap();
    let err = syncer.sync(Some("main")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(missing), "{err}");
    assert!(err.to_string().contains(&id), "{err}");
    assert!(store.file_index(syncer.repo()).await.unwrap().is_empty());
}

/// A force push to an unrelated history, after which garbage collection drops the commit
/// the store last synced: the tree diff has nothing to start from, so the sync lists the
/// whole tree, says why in a `FullScan` event naming the lost commit, and mirrors the new
/// head exactly. The next commit is synced from the changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_that_loses_the_synced_commit_falls_back_to_a_full_scan() {
    use futures::StreamExt;
    use sync_core::{FullScanReason, SyncEvent};

    let repo = TestRepo::new();
    repo.write("README.md", "# first history\n")
        .write("src/lib.rs", "pub fn one() -> u8 { 1 }\n")
        .write("src/gone.rs", "pub fn gone() {}\n");
    let lost = repo.commit("first history");
    let store = Arc::new(MemoryStore::new());
    let syncer = Syncer::new(
        Arc::new(GitSource::open(repo.path()).unwrap()),
        store.clone(),
    )
    .unwrap();
    syncer.sync(Some("main")).await.unwrap();

    // Force-push an orphan commit over `main` and let git forget the old one.
    repo.git(["checkout", "-q", "--orphan", "rewritten"]);
    repo.git(["rm", "-rq", "--cached", "."]);
    repo.write("README.md", "# second history\n")
        .write("src/lib.rs", "pub fn two() -> u8 { 2 }\n")
        .write("docs/new.md", "# new\n");
    repo.git(["add", "README.md", "src/lib.rs", "docs/new.md"]);
    let rewritten = repo.commit("an unrelated history");
    repo.git(["branch", "-f", "main", "rewritten"]);
    repo.git(["checkout", "-q", "main"]);
    repo.git(["branch", "-D", "rewritten"]);
    repo.git(["reflog", "expire", "--expire=now", "--all"]);
    repo.gc();
    assert!(
        !repo
            .try_git(["cat-file", "-e", &lost.to_hex()])
            .status
            .success(),
        "the synced commit is gone"
    );

    let events: Vec<SyncEvent> = syncer.run(Some("main")).collect().await;
    let reason = events.iter().find_map(|e| match e {
        SyncEvent::FullScan { reason } => Some(reason.clone()),
        _ => None,
    });
    match reason {
        Some(FullScanReason::SourceCannotDiff { detail }) => {
            assert!(
                detail.contains(&lost.to_hex()),
                "names the commit: {detail}"
            );
            assert!(
                detail.contains("force push"),
                "says what happened: {detail}"
            );
        }
        other => panic!("expected a full scan for the lost commit, got {other:?}: {events:?}"),
    }
    assert!(
        matches!(events.last(), Some(SyncEvent::Completed { record }) if record.commit == rewritten),
        "{events:?}"
    );
    let index = store.file_index(syncer.repo()).await.unwrap();
    assert_eq!(
        index.files(),
        expected_index_of(repo.path(), &rewritten).as_slice()
    );

    // From a commit the repository has, the changes are listed again.
    repo.write("src/lib.rs", "pub fn three() -> u8 { 3 }\n");
    repo.git(["add", "src/lib.rs"]);
    let next = repo.commit("an edit");
    let events: Vec<SyncEvent> = syncer.run(Some("main")).collect().await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, SyncEvent::FullScan { .. })),
        "{events:?}"
    );
    let index = store.file_index(syncer.repo()).await.unwrap();
    assert_eq!(
        index.files(),
        expected_index_of(repo.path(), &next).as_slice()
    );
}
