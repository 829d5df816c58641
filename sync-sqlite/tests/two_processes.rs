//! Invariant 5 across processes: two OS processes syncing the same database file at once —
//! one wins, the other gets `Conflict`, and the history stays one chain. A process killed
//! while holding the repository loses it when its lease expires.
//!
//! The test binary plays both parts: run normally it is the parent; started by the parent
//! with `SYNC_SQLITE_CHILD_DB` set, it is a child that opens the database, waits for `go`,
//! calls `begin`, reports the outcome and holds the run until told to `end` (then commits
//! it) or until it is killed. (`harness = false`: there is no child "test" that would pass
//! by doing nothing.)

// The parent reports like libtest does, and the children talk to it over stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use sync_core::testkit::run_start;
use sync_core::{ChangeSet, ErrorKind, RepoKey, SyncStats, SyncStatus, SyncStore};
use sync_sqlite::SqliteStore;

const NAME: &str = "two_processes_race_and_one_wins";
const CHILD_DB: &str = "SYNC_SQLITE_CHILD_DB";
const CHILD_LEASE_MS: &str = "SYNC_SQLITE_CHILD_LEASE_MS";

fn main() {
    if let Some(db) = std::env::var_os(CHILD_DB) {
        let lease = std::env::var(CHILD_LEASE_MS)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60_000);
        child(Path::new(&db), Duration::from_millis(lease));
        return;
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("{NAME}: test");
        return;
    }
    // Honour libtest-style name filters (`cargo test -p sync-sqlite -- sweep`).
    let mut filters = Vec::new();
    let mut skip_value = false;
    for a in &args {
        if skip_value {
            skip_value = false;
        } else if matches!(
            a.as_str(),
            "--test-threads" | "--skip" | "--format" | "--color" | "--logfile" | "-Z"
        ) {
            skip_value = true;
        } else if !a.starts_with('-') {
            filters.push(a.as_str());
        }
    }
    println!();
    if !filters.is_empty() && !filters.iter().any(|f| NAME.contains(f)) {
        println!("running 0 tests\n\ntest result: ok. 0 passed; 0 failed; 1 filtered out\n");
        return;
    }
    println!("running 1 test");
    parent();
    println!("test {NAME} ... ok\n\ntest result: ok. 1 passed; 0 failed\n");
}

fn repo() -> RepoKey {
    RepoKey::new("git:/shared/repository").unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The child's part. Every line it prints is one step of the protocol.
fn child(db: &Path, lease: Duration) {
    let rt = runtime();
    let store = rt
        .block_on(SqliteStore::open(db))
        .expect("the child opens the database");
    let mut stdin = BufReader::new(std::io::stdin());
    let mut out = std::io::stdout();
    let mut line = String::new();
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "go");
    let start = run_start(&repo(), lease);
    let run = match rt.block_on(store.begin(start)) {
        Ok(run) => {
            writeln!(out, "won {}", run.id).unwrap();
            Some(run)
        }
        Err(e) if e.kind() == ErrorKind::Conflict => {
            writeln!(out, "conflict {e}").unwrap();
            None
        }
        Err(e) => {
            writeln!(out, "error {:?} {e}", e.kind()).unwrap();
            None
        }
    };
    out.flush().unwrap();
    line.clear();
    stdin.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "end");
    if let Some(run) = run {
        rt.block_on(store.commit(&run, ChangeSet::default(), SyncStats::default()))
            .expect("the winner commits");
    }
    writeln!(out, "done").unwrap();
    out.flush().unwrap();
}

struct Proc {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Proc {
    fn spawn(db: &Path, lease_ms: u64) -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_DB, db)
            .env(CHILD_LEASE_MS, lease_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the test binary starts again as a child");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    fn recv(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert!(
            !line.is_empty(),
            "the child ended early: {:?}",
            self.child.try_wait()
        );
        line.trim_end().to_owned()
    }

    fn finish(mut self) {
        self.send("end");
        assert_eq!(self.recv(), "done");
        assert!(self.child.wait().unwrap().success());
    }
}

/// Starts two children on the database, lets them race for `begin`, and returns them with
/// their outcomes, winner first. Asserts exactly one won and the other got `Conflict`.
fn race(db: &Path, lease_ms: u64) -> [(Proc, String); 2] {
    let mut a = Proc::spawn(db, lease_ms);
    let mut b = Proc::spawn(db, lease_ms);
    assert_eq!(a.recv(), "ready");
    assert_eq!(b.recv(), "ready");
    a.send("go");
    b.send("go");
    let (ra, rb) = (a.recv(), b.recv());
    let outcomes = [&ra, &rb];
    assert_eq!(
        outcomes.iter().filter(|o| o.starts_with("won ")).count(),
        1,
        "exactly one process wins: {outcomes:?}"
    );
    let loser = outcomes.iter().find(|o| !o.starts_with("won ")).unwrap();
    assert!(
        loser.starts_with("conflict ") && loser.contains("already being synced"),
        "the other gets Conflict with the busy message: {loser}"
    );
    if ra.starts_with("won ") {
        [(a, ra), (b, rb)]
    } else {
        [(b, rb), (a, ra)]
    }
}

fn won_id(outcome: &str) -> i64 {
    outcome.trim_start_matches("won ").parse().unwrap()
}

fn parent() {
    let dir = tempfile::tempdir().unwrap();
    // The first race also races the creation and migration of the file.
    let db = dir.path().join("shared.db");
    let mut winners = Vec::new();
    for _ in 0..3 {
        let [(winner, won), (loser, _)] = race(&db, 60_000);
        winners.push(won_id(&won));
        loser.finish();
        winner.finish();
    }

    // A winner killed while holding the repository: the other process is refused until the
    // lease expires; then the next begin marks the dead run abandoned and takes over.
    let [(mut winner, won), (loser, _)] = race(&db, 4_000);
    let killed = won_id(&won);
    winner.child.kill().unwrap();
    winner.child.wait().unwrap();
    loser.finish();
    std::thread::sleep(Duration::from_millis(4_500));
    let [(winner, won), (loser, _)] = race(&db, 60_000);
    winners.push(won_id(&won));
    loser.finish();
    winner.finish();

    let rt = runtime();
    let store = rt.block_on(SqliteStore::open(&db)).unwrap();
    let history = rt.block_on(store.history(&repo(), 100)).unwrap();
    let ids: Vec<i64> = history.iter().rev().map(|r| r.id.0).collect();
    assert_eq!(
        ids,
        [winners[0], winners[1], winners[2], killed, winners[3]],
        "only winners are in the history, in order"
    );
    for pair in history.windows(2) {
        assert_eq!(pair[0].previous, Some(pair[1].id), "one linear chain");
    }
    assert_eq!(history.last().unwrap().previous, None);
    let statuses: Vec<SyncStatus> = history.iter().rev().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            SyncStatus::Completed,
            SyncStatus::Completed,
            SyncStatus::Completed,
            SyncStatus::Abandoned,
            SyncStatus::Completed
        ]
    );
}
