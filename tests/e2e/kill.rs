//! A `projsync run` killed with SIGKILL in the middle of an import: nothing of it becomes
//! visible, the next run starts at once (the store sees that the holder died, without
//! waiting for its lease), and converges with nothing lost.

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use sync_core::{EntryQuery, RepoKey, SyncStore};
use sync_git::testkit::TestRepo;

use crate::support::{Cli, json_lines, ls_oracle};

/// Lines of text, different for every file, so every blob and chunk is new.
fn big_text(file: usize, lines: usize) -> String {
    (0..lines)
        .map(|l| format!("file {file} line {l}: the quick brown fox jumps over the lazy dog\n"))
        .collect()
}

#[test]
fn sigkill_mid_import_then_the_next_run_converges() {
    let repo = TestRepo::new();
    repo.write("README.md", "# Before\n");
    repo.write("src/lib.rs", "pub fn kept() {}\n");
    let first = repo.commit("first");
    // Enough content that the import takes a good while: 300 files of ~200 KiB.
    for i in 0..300 {
        repo.write(&format!("data/file{i:03}.txt"), big_text(i, 3000));
    }
    repo.write("README.md", "# After\n");
    let second = repo.commit("lots of data");

    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let embed = ["--embedder", "hash:32"];
    repo.git(["update-ref", "refs/heads/main", &first.to_hex()]);
    cli.sync_json(src, "main", &embed);
    let before = cli.ls(src);
    assert_eq!(before, ls_oracle(repo.path(), &first));
    repo.git(["update-ref", "refs/heads/main", &second.to_hex()]);

    // Start the import and kill the process as soon as it has imported something.
    let mut child = cli
        .command([
            "run",
            "--source",
            src,
            "--branch",
            "main",
            "--json",
            "--embedder",
            "hash:32",
            "--lease",
            "600",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("projsync starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("a line of output");
        let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON event");
        let importing = event["event"] == "progress" && event["files_done"].as_u64() > Some(0);
        seen.push(event);
        if importing {
            break;
        }
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("the killed process is reaped");
    assert!(
        seen.iter()
            .all(|e| e["event"] != "completed" && e["phase"] != "finalize"),
        "the kill landed before the final switch: {seen:?}"
    );

    // Nothing of the killed run is visible, and it still holds the repository.
    assert_eq!(cli.ls(src), before, "a killed run changed the active index");
    let history = cli.history(src);
    assert_eq!(
        history[0]["status"], "running",
        "the killed run never ended itself"
    );
    let killed = history[0]["id"].as_i64().unwrap();

    // The killed run's lease has ten minutes to go, yet the very next run goes ahead: its
    // holder is dead, which the store sees at once.
    let out = cli.run([
        "run",
        "--source",
        src,
        "--branch",
        "main",
        "--json",
        "--embedder",
        "hash:32",
    ]);
    assert!(
        out.status.success(),
        "the run after the kill was refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let events = json_lines(&out.stdout);
    assert_eq!(events.last().unwrap()["event"], "completed");
    assert_eq!(cli.ls(src), ls_oracle(repo.path(), &second));
    let history = cli.history(src);
    let killed_now = history.iter().find(|r| r["id"] == killed).unwrap();
    assert_eq!(killed_now["status"], "abandoned");
    assert_eq!(
        killed_now["error"],
        sync_core::RunEnd::holder_died().reason(),
        "abandoned because its holder died, not because its lease expired"
    );
    assert_eq!(
        history[0]["previous"], killed,
        "the chain goes through the killed run"
    );

    // Nothing lost: every active entry has its text's embedding, the first run's entries
    // are kept as history, and restoring the first run brings its state back.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = sync_sqlite::SqliteStore::open(cli.dir().join("project-sync.db"))
            .await
            .unwrap();
        let key = RepoKey::new(format!(
            "git:{}",
            repo.path().canonicalize().unwrap().display()
        ))
        .unwrap();
        let active = store
            .entries(
                &key,
                &EntryQuery {
                    with_embeddings: true,
                    ..EntryQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(active.len() > 300, "{} entries", active.len());
        let reference = sync_core::HashEmbedder::new(32);
        for e in &active {
            assert_eq!(
                e.embedding.as_ref(),
                Some(&reference.embed_one(&e.content)),
                "`{}` lost its embedding",
                e.path
            );
        }
        let old_readme = store
            .entries(
                &key,
                &EntryQuery {
                    path: Some(sync_core::RepoPath::new("README.md").unwrap()),
                    include_superseded: true,
                    ..EntryQuery::default()
                },
            )
            .await
            .unwrap();
        assert!(
            old_readme.iter().any(|e| e.content == "# Before\n"),
            "history kept"
        );
    });
    let first_run = history.last().unwrap()["id"].as_i64().unwrap();
    cli.ok(["restore", &first_run.to_string(), "-s", src]);
    assert_eq!(cli.ls(src), before);
}
