//! Contents: the blob API for few files, the tarball for many, and the checks on both.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use sync_core::{
    BlobId, EntryKind, EntryQuery, ErrorKind, RepoPath, RepoSource, SourceNotice, SyncEvent,
    SyncStore, TreeEntry,
};
use sync_git::testkit::TestRepo;
use sync_github::testkit::{FakeGitHub, Reply, Route};

use crate::support::*;

async fn collect(
    source: &sync_github::GitHubSource,
    commit: &sync_core::CommitId,
    wanted: Vec<TreeEntry>,
) -> BTreeMap<String, Vec<u8>> {
    let mut stream = source.contents(commit, wanted);
    let mut got = BTreeMap::new();
    while let Some(blob) = stream.next().await {
        let blob = blob.expect("a blob");
        assert_eq!(BlobId::for_content(&blob.data), blob.id);
        let old = got.insert(blob.path.to_string(), blob.data.to_vec());
        assert!(old.is_none(), "{} came twice", blob.path);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn few_blobs_come_from_the_blob_api_raw() {
    let repo = TestRepo::new();
    repo.write("a.txt", "same\n");
    repo.write("b/a-copy.txt", "same\n");
    repo.write("c.txt", "other\n");
    let commit = repo.commit("one");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let tree = repo.expected_tree(&commit);

    let got = collect(&source, &commit, tree.entries().to_vec()).await;
    assert_eq!(got.len(), 3, "one blob per wanted entry");
    assert_eq!(got["a.txt"], b"same\n");
    assert_eq!(got["b/a-copy.txt"], b"same\n");
    assert_eq!(got["c.txt"], b"other\n");
    // Two distinct blobs: two requests, both asking for the raw media type.
    let blobs: Vec<_> = github
        .log()
        .into_iter()
        .filter(|l| l.route == Route::Blob)
        .collect();
    assert_eq!(blobs.len(), 2);
    assert!(
        blobs
            .iter()
            .all(|l| l.accept.as_deref() == Some("application/vnd.github.raw+json"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tarball_yields_symlinks_and_executables_as_git_stores_them() {
    let (repo, commit) = repo_with(20);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = Arc::new(builder(&github).tarball_threshold(0).build().unwrap());
    let tree = repo.expected_tree(&commit);

    let got = collect(&source, &commit, tree.entries().to_vec()).await;
    assert_eq!(got.len(), tree.len());
    assert_eq!(
        got["docs/latest"], b"../README.md",
        "a symlink's blob is its target"
    );
    assert_eq!(got["scripts/run.sh"], b"#!/bin/sh\necho run\n");
    assert_eq!(github.count(Route::Tarball), 1);
    assert_eq!(github.count(Route::Codeload), 1);
    assert_eq!(github.count(Route::Blob), 0);
    let kinds = tree
        .entries()
        .iter()
        .filter(|e| e.kind == EntryKind::Symlink)
        .count();
    assert_eq!(kinds, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_ignore_and_export_subst_fall_back_to_the_blob_api() {
    let (repo, _) = repo_with(100);
    repo.write(
        ".gitattributes",
        "ignored.txt export-ignore\nstamped.txt export-subst\n",
    );
    repo.write("ignored.txt", "not in the tarball\n");
    repo.write("stamped.txt", "commit $Format:%H$\n");
    let commit = repo.commit("attributes");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));

    sync(&syncer, Some("main")).await.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    assert_eq!(github.count(Route::Codeload), 1);
    assert_eq!(github.count(Route::Blob), 2, "{:?}", github.log());
    // The stored text is the blob's, not the tarball's substituted one.
    let entries = store
        .entries(
            syncer.repo(),
            &EntryQuery::path(RepoPath::new("stamped.txt").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].content, "commit $Format:%H$\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_blob_is_rejected_and_the_store_untouched() {
    let (repo, first) = repo_with(30);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));
    let before = sync(&syncer, Some("main")).await.result.unwrap();

    repo.write("README.md", "# changed\n");
    repo.commit("change");
    github.inject(Some(Route::Blob), 1, Reply::CorruptBody);
    let run = sync(&syncer, Some("main")).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains("README.md"), "{err}");
    assert!(matches!(run.events.last(), Some(SyncEvent::Failed { .. })));

    assert_store_mirrors(&store, &syncer, &repo, &first).await;
    let last = store.last_completed(syncer.repo()).await.unwrap().unwrap();
    assert_eq!(last.id, before.id, "no run completed");
    let readme = store
        .entries(
            syncer.repo(),
            &EntryQuery::path(RepoPath::new("README.md").unwrap()),
        )
        .await
        .unwrap();
    assert!(readme.iter().all(|e| e.content.contains("# hello")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_tarball_is_read_again() {
    let (repo, commit) = repo_with(400);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(Some(Route::Codeload), 1, Reply::TruncatedBody);
    let (store, syncer) = syncer(source(&github));
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    assert_eq!(github.count(Route::Codeload), 2);
    assert!(
        run.events.iter().any(|e| matches!(
            e,
            SyncEvent::Source(SourceNotice::Retrying { reason, .. }) if reason.contains("tarball")
        )),
        "{:?}",
        run.events
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_tarball_never_yields_wrong_content() {
    let (repo, commit) = repo_with(200);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(Some(Route::Codeload), 1, Reply::CorruptBody);
    let (store, syncer) = syncer(source(&github));
    let record = sync(&syncer, Some("main")).await.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    // Whatever the damage hit, every blob was checked: all arrived, each exactly once.
    assert_eq!(
        record.stats.blobs_fetched,
        repo.expected_tree(&commit).len() as u64 - 1
    );
    let entries = store
        .entries(syncer.repo(), &EntryQuery::active())
        .await
        .unwrap();
    for e in entries
        .iter()
        .filter(|e| e.path.to_string().ends_with(".rs"))
    {
        assert!(
            e.content.starts_with("pub fn f"),
            "{}: {:?}",
            e.path,
            e.content
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_source_itself_rejects_content_that_does_not_hash_to_its_blob() {
    let (repo, commit) = repo_with(10);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let tree = repo.expected_tree(&commit);
    let readme = tree
        .get(&RepoPath::new("README.md").unwrap())
        .unwrap()
        .clone();

    github.inject(Some(Route::Blob), 1, Reply::CorruptBody);
    let got: Vec<_> = source
        .contents(&commit, vec![readme.clone()])
        .collect()
        .await;
    assert_eq!(got.len(), 1);
    let err = got.into_iter().next().unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert!(err.to_string().contains(&readme.blob.to_string()), "{err}");

    // Through the tarball: every path of a damaged archive either checks out or is
    // fetched again; nothing wrong is ever yielded.
    let many = Arc::new(builder(&github).tarball_threshold(0).build().unwrap());
    github.inject(Some(Route::Codeload), 1, Reply::CorruptBody);
    let got = collect(&many, &commit, tree.entries().to_vec()).await;
    assert_eq!(got.len(), tree.len());
}
