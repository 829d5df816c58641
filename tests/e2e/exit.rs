//! `projsync`'s exit status for each kind of error, each caused for real: a held lease, a
//! fake GitHub refusing the token, rate limiting or corrupting a blob, a file that is no
//! database, SIGINT. (Usage and not-found errors are in `cli::failures_are_clear_…`.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use sync_core::{RepoKey, SyncStore};
use sync_git::testkit::TestRepo;
use sync_github::testkit::{FakeGitHub, Reply, Route};

use crate::support::{Cli, json_lines};

/// The status, checked to be `code`, and stderr, checked to end with one `error: ` line
/// (after the progress lines of a run).
fn expect_status(out: &Output, code: i32, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{what}: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: "), "{what}: {err}");
    assert_eq!(err.matches("error: ").count(), 1, "{what}: {err}");
    err
}

fn small_repo() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("README.md", "# hello\n")
        .write("src/lib.rs", "pub fn f() {}\n");
    repo.commit("first");
    repo
}

/// The key `projsync` keeps a local repository under.
fn git_key(repo: &TestRepo) -> RepoKey {
    RepoKey::new(format!(
        "git:{}",
        repo.path().canonicalize().unwrap().display()
    ))
    .unwrap()
}

#[test]
fn help_documents_the_exit_status_table() {
    let cli = Cli::new();
    let out = cli.bare_command().arg("--help").output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for row in [
        "  0  success",
        "  1  a backend failed",
        "  2  usage error",
        "  3  not found",
        "  4  conflict",
        "  5  unauthorized",
        "  6  rate limited",
        "  7  corrupt content",
        "  8  unsupported",
        "130  interrupted",
    ] {
        assert!(help.contains(row), "--help lacks `{row}`:\n{help}");
    }
}

/// The workspace README and `sync-cli`'s README show the same exit-status table (the
/// latter is checked against the code by `sync-cli`'s own tests).
#[test]
fn the_readmes_show_the_same_exit_status_table() {
    let rows = |readme: &str| -> Vec<String> {
        readme
            .lines()
            .filter(|l| l.starts_with("| ") && l[2..].starts_with(|c: char| c.is_ascii_digit()))
            .map(str::to_owned)
            .collect()
    };
    let workspace = rows(include_str!("../../README.md"));
    let cli = rows(include_str!("../../sync-cli/README.md"));
    assert_eq!(cli.len(), 10, "{cli:?}");
    assert_eq!(workspace, cli);
}

/// A run held by another process (begun through the library on the same SQLite file)
/// makes `projsync run` exit 4, naming the run, and change nothing.
#[test]
fn a_second_run_while_one_holds_the_lease_exits_4() {
    let repo = small_repo();
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The store stays open while the command runs: this process holds the run.
    let store = rt
        .block_on(sync_sqlite::SqliteStore::open(
            cli.dir().join("project-sync.db"),
        ))
        .unwrap();
    let held = rt
        .block_on(store.begin(sync_core::testkit::run_start(
            &git_key(&repo),
            Duration::from_secs(600),
        )))
        .unwrap();
    let err = expect_status(
        &cli.run(["run", "-s", src, "--embedder", "none"]),
        4,
        "conflict",
    );
    assert!(
        err.contains("already being synced") && err.contains(&held.id.to_string()),
        "{err}"
    );
    let history = cli.history(src);
    assert_eq!(history.len(), 1, "the refused run left no record");
    assert_eq!(history[0]["status"], "running");
    drop(store);
}

/// GitHub refusing the token exits 5, without printing the token.
#[test]
fn a_refused_github_token_exits_5() {
    let repo = small_repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let github = rt
        .block_on(FakeGitHub::serve(repo.path(), "octo", "demo"))
        .unwrap();
    github.set_token(Some("the-right-token"));
    let cli = Cli::new();
    let out = cli
        .command([
            "run",
            "--embedder",
            "none",
            "-s",
            "github:octo/demo",
            "--api-url",
            &github.api_url(),
        ])
        .env("GITHUB_TOKEN", "ghp_WRONGTOKEN123")
        .output()
        .unwrap();
    let err = expect_status(&out, 5, "unauthorized");
    assert!(!err.contains("WRONGTOKEN"), "{err}");
    // The same token works once the server accepts it.
    github.set_token(Some("ghp_WRONGTOKEN123"));
    let out = cli
        .command([
            "run",
            "--embedder",
            "none",
            "-s",
            "github:octo/demo",
            "--api-url",
            &github.api_url(),
        ])
        .env("GITHUB_TOKEN", "ghp_WRONGTOKEN123")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(rt);
}

/// A rate limit resetting later than the source waits for exits 6, naming the reset.
#[test]
fn a_rate_limit_without_waiting_exits_6() {
    let repo = small_repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let github = rt
        .block_on(FakeGitHub::serve(repo.path(), "octo", "demo"))
        .unwrap();
    github.inject(
        None,
        1,
        Reply::RateLimit {
            status: 429,
            reset_in: Duration::from_secs(3600),
        },
    );
    let cli = Cli::new();
    let out = cli.run([
        "run",
        "--embedder",
        "none",
        "-s",
        "github:octo/demo",
        "--api-url",
        &github.api_url(),
    ]);
    let err = expect_status(&out, 6, "rate limited");
    assert!(err.contains("rate limit"), "{err}");
    assert_eq!(github.total(), 1, "no waiting, no retry");
    drop(rt);
}

/// A blob whose content does not hash to its id exits 7 and stores nothing.
#[test]
fn a_corrupted_blob_exits_7() {
    let repo = small_repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let github = rt
        .block_on(FakeGitHub::serve(repo.path(), "octo", "demo"))
        .unwrap();
    github.inject(Some(Route::Blob), 1, Reply::CorruptBody);
    let cli = Cli::new();
    let api = github.api_url();
    let out = cli.run([
        "run",
        "-s",
        "github:octo/demo",
        "--api-url",
        &api,
        "--embedder",
        "none",
    ]);
    let err = expect_status(&out, 7, "corrupt");
    assert!(err.contains("hash"), "{err}");
    assert!(
        cli.ls("github:octo/demo").is_empty(),
        "nothing of the failed run is visible"
    );
    drop(rt);
}

/// A store file that is not a database exits 1 (a backend failure) and is left alone.
#[test]
fn a_store_that_is_not_a_database_exits_7() {
    let repo = small_repo();
    let cli = Cli::new();
    let junk = b"this is a text file, not a SQLite database; please leave it alone\n".repeat(8);
    std::fs::write(cli.dir().join("project-sync.db"), &junk).unwrap();
    let src = repo.path().to_str().unwrap();
    for args in [
        &["run", "-s", src, "--embedder", "none"][..],
        &["ls", "-s", src],
    ] {
        let err = expect_status(&cli.run(args), 7, "corrupt");
        assert!(err.contains("not a SQLite database"), "{err}");
    }
    assert_eq!(
        std::fs::read(cli.dir().join("project-sync.db")).unwrap(),
        junk
    );
}

/// A store the operating system cannot open (its directory is a file) exits 1.
#[test]
fn a_store_that_cannot_be_opened_exits_1() {
    let repo = small_repo();
    let cli = Cli::new();
    std::fs::write(cli.dir().join("not-a-dir"), "a file\n").unwrap();
    let db = cli.dir().join("not-a-dir/project-sync.db");
    let cli = Cli::with_db(db.to_str().unwrap());
    let src = repo.path().to_str().unwrap();
    let err = expect_status(
        &cli.run(["run", "-s", src, "--embedder", "none"]),
        1,
        "backend",
    );
    assert!(err.contains("project-sync.db"), "{err}");
}

/// A database URL of a scheme no store serves exits 8, without its password.
#[test]
fn an_unsupported_store_exits_8() {
    let repo = small_repo();
    let cli = Cli::with_db("mysql://root:hunter2@db.example/app");
    let err = expect_status(
        &cli.run([
            "run",
            "-s",
            repo.path().to_str().unwrap(),
            "--embedder",
            "none",
        ]),
        8,
        "unsupported",
    );
    assert!(err.contains("mysql://root:***@db.example/app"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

/// Lines of text, different for every file, so every blob and chunk is new.
fn big_text(file: usize, lines: usize) -> String {
    (0..lines)
        .map(|l| format!("file {file} line {l}: pack my box with five dozen liquor jugs\n"))
        .collect()
}

/// SIGINT in the middle of an import cancels the run: exit 130, the active state as it was,
/// the run recorded as cancelled, and the next run starts at once (nothing holds the lease)
/// and reuses the vectors the cancelled run computed.
#[test]
fn sigint_mid_import_exits_130_and_leaves_the_store_as_it_was() {
    let repo = TestRepo::new();
    repo.write("README.md", "# Before\n");
    repo.commit("first");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let embed = ["--embedder", "hash:32"];
    cli.sync_json(src, "main", &embed);
    let before = cli.ls(src);
    repo.write_all((0..300).map(|i| (format!("data/file{i:03}.txt"), big_text(i, 3000))));
    repo.commit("lots of data");

    let mut child = cli
        .command(["run", "-s", src, "--json", "--embedder", "hash:32"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("projsync starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut embedded = 0;
    for line in lines.by_ref() {
        let event: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
        if event["event"] == "progress" && event["texts_embedded"].as_u64() > Some(0) {
            embedded = event["texts_embedded"].as_u64().unwrap();
            break;
        }
    }
    assert!(
        embedded > 0,
        "the run embedded texts before it was interrupted"
    );
    let signalled = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(signalled.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let last = json_lines(rest.join("\n").as_bytes());
    assert_eq!(
        last.last().map(|e| e["event"].clone()),
        Some("cancelled".into()),
        "the stream ended with its terminal event: {rest:?}"
    );

    assert_eq!(cli.ls(src), before, "the store is as it was");
    let history = cli.history(src);
    assert_eq!(history[0]["status"], "cancelled");
    // No lease to wait for: the next run goes through at once, and reuses every vector
    // the cancelled run computed.
    let events = cli.sync_json(src, "main", &embed);
    let stats = &events.last().unwrap()["record"]["stats"];
    assert!(
        stats["embeddings_reused"].as_u64().unwrap() >= embedded,
        "{embedded} texts were embedded before the interrupt: {stats}"
    );
}
