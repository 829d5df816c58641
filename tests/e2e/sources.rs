//! The same commits from GitHub (a local fake serving the repository through GitHub's REST
//! API) and from the local git repository: identical store indexes.

use std::sync::Arc;

use sync_core::{SyncStore, Syncer};
use sync_git::testkit::standard_history;
use sync_github::testkit::FakeGitHub;

use crate::support::{Cli, ls_oracle, point_branch, show};

#[test]
fn github_and_git_give_identical_indexes() {
    let (repo, steps) = standard_history();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let github = rt
        .block_on(FakeGitHub::serve(repo.path(), "octo", "demo"))
        .expect("the fake GitHub starts");

    // Through the library, into two stores.
    rt.block_on(async {
        let git_store = Arc::new(sync_sqlite::SqliteStore::temporary().await.unwrap());
        let gh_store = Arc::new(sync_sqlite::SqliteStore::temporary().await.unwrap());
        let git = Syncer::new(
            Arc::new(sync_git::GitSource::open(repo.path()).unwrap()),
            git_store.clone(),
        )
        .unwrap();
        let gh = Syncer::new(
            Arc::new(
                sync_github::GitHubSource::builder("octo", "demo")
                    .api_url(github.api_url())
                    .anonymous()
                    .build()
                    .unwrap(),
            ),
            gh_store.clone(),
        )
        .unwrap();
        for step in &steps {
            point_branch(&repo, step.branch, &step.commit);
            let a = git.sync(Some(step.branch)).await.unwrap();
            let b = gh.sync(Some(step.branch)).await.unwrap();
            assert_eq!(a.commit, b.commit);
            let git_index = git_store.file_index(git.repo()).await.unwrap();
            let gh_index = gh_store.file_index(gh.repo()).await.unwrap();
            assert_eq!(git_index, gh_index, "after `{}`", step.label);
            let git_entries = git_store
                .entries(git.repo(), &Default::default())
                .await
                .unwrap();
            let gh_entries = gh_store
                .entries(gh.repo(), &Default::default())
                .await
                .unwrap();
            let key = |e: &sync_core::MemoryEntry| (e.path.clone(), e.ordinal, e.content_hash);
            assert_eq!(
                git_entries.iter().map(key).collect::<Vec<_>>(),
                gh_entries.iter().map(key).collect::<Vec<_>>(),
                "entries after `{}`",
                step.label
            );
        }
    });

    // Through the command line: `projsync ls` of both agree with git.
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let last = steps.last().unwrap();
    cli.ok([
        "run",
        "--embedder",
        "none",
        "--source",
        "github:octo/demo",
        "--branch",
        last.branch,
        "--api-url",
        &github.api_url(),
    ]);
    cli.ok([
        "run",
        "-s",
        src,
        "--branch",
        last.branch,
        "--embedder",
        "none",
    ]);
    let (gh, git) = (cli.ls("github:octo/demo"), cli.ls(src));
    assert_eq!(show(&gh), show(&git));
    assert_eq!(gh, ls_oracle(repo.path(), &last.commit));
    let branches = String::from_utf8(cli.ok([
        "branches",
        "-s",
        "github:octo/demo",
        "--api-url",
        &github.api_url(),
    ]))
    .unwrap();
    assert!(
        branches.contains("* main\t") && branches.contains("  feature\t"),
        "{branches}"
    );
    drop(rt);
}
