//! Invariant 5 across processes: two OS processes syncing the same database file at once —
//! one wins, the other gets `Conflict`, and the history stays one chain. A process killed
//! while holding the repository loses it at once: its lock dies with it, and the next
//! `begin` marks its run abandoned without waiting for the lease. Where the lock cannot
//! tell (no lock file, as with a run opened by an older version), the lease decides.
//!
//! The test binary plays all parts: run normally it is the parent; started by the parent
//! with `SYNC_SQLITE_CHILD_DB` set, it is a child that opens the database, waits for `go`,
//! calls `begin`, stages one entry when it won and was told `go stage`, reports the outcome and holds the run until
//! told to `end` (then commits it) or until it is killed. (`harness = false`: there is no
//! child "test" that would pass by doing nothing.)

// The parent reports like libtest does, and the children talk to it over stdout.
#![allow(clippy::print_stdout)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use sync_core::testkit::{one_entry_batch, run_start};
use sync_core::{ChangeSet, ErrorKind, RepoKey, RunEnd, SyncStats, SyncStatus, SyncStore};
use sync_sqlite::SqliteStore;

const TESTS: &[(&str, fn())] = &[
    ("two_processes_race_and_one_wins", race_and_one_wins),
    (
        "a_killed_holder_is_abandoned_at_once",
        a_killed_holder_is_abandoned_at_once,
    ),
    (
        "without_a_lock_file_the_lease_decides",
        without_a_lock_file_the_lease_decides,
    ),
];
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
        for (name, _) in TESTS {
            println!("{name}: test");
        }
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
    let chosen: Vec<_> = TESTS
        .iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f)))
        .collect();
    let plural = if chosen.len() == 1 { "" } else { "s" };
    println!("\nrunning {} test{plural}", chosen.len());
    for (name, test) in &chosen {
        test();
        println!("test {name} ... ok");
    }
    println!(
        "\ntest result: ok. {} passed; 0 failed; {} filtered out\n",
        chosen.len(),
        TESTS.len() - chosen.len()
    );
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
    let stage = match line.trim() {
        "go" => false,
        "go stage" => true,
        other => panic!("unexpected command {other:?}"),
    };
    let start = run_start(&repo(), lease);
    let run = match rt.block_on(store.begin(start)) {
        Ok(run) => {
            if stage {
                let text = format!("staged by run {}", run.id);
                rt.block_on(store.stage(&run, one_entry_batch("staged.rs", &text)))
                    .expect("the winner stages");
            }
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

fn race_and_one_wins() {
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

    let rt = runtime();
    let store = rt.block_on(SqliteStore::open(&db)).unwrap();
    let history = rt.block_on(store.history(&repo(), 100)).unwrap();
    let ids: Vec<i64> = history.iter().rev().map(|r| r.id.0).collect();
    assert_eq!(ids, winners, "only winners are in the history, in order");
    for pair in history.windows(2) {
        assert_eq!(pair[0].previous, Some(pair[1].id), "one linear chain");
    }
    assert_eq!(history.last().unwrap().previous, None);
    assert!(history.iter().all(|r| r.status == SyncStatus::Completed));
    assert!(
        std::fs::read_dir(dir.path().join("shared.db.runs"))
            .unwrap()
            .next()
            .is_none(),
        "committed runs leave no lock file behind"
    );
}

/// Entries the run `id` staged, as SQL sees them.
fn staged_rows(db: &Path, id: i64) -> i64 {
    rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM entries WHERE created_by = ?1",
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

/// A child holds a run with a long lease: while it lives, another process gets
/// `Conflict`; killed with SIGKILL, its run is abandoned by the very next `begin`.
fn a_killed_holder_is_abandoned_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let rt = runtime();
    let store = rt.block_on(SqliteStore::open(&db)).unwrap();

    // A live holder in another process keeps the repository.
    let mut holder = Proc::spawn(&db, 60_000);
    assert_eq!(holder.recv(), "ready");
    holder.send("go");
    let held = won_id(&holder.recv());
    let e = rt
        .block_on(store.begin(run_start(&repo(), Duration::from_secs(60))))
        .expect_err("a live holder keeps the repository");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("already being synced"), "{e}");
    holder.finish();

    // Killed while holding it: the next begin takes over at once, well within the lease.
    let mut victim = Proc::spawn(&db, 60_000);
    assert_eq!(victim.recv(), "ready");
    victim.send("go stage");
    let killed = won_id(&victim.recv());
    assert_eq!(staged_rows(&db, killed), 1, "the victim staged an entry");
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    let next = rt
        .block_on(store.begin(run_start(&repo(), Duration::from_secs(60))))
        .expect("a dead holder's run does not block the repository");
    assert_eq!(next.previous.map(|p| p.0), Some(killed));
    let record = rt
        .block_on(store.run(&repo(), sync_core::SyncId(killed)))
        .unwrap();
    assert_eq!(record.status, SyncStatus::Abandoned);
    assert_eq!(record.error, Some(RunEnd::holder_died().reason()));
    assert_eq!(
        staged_rows(&db, killed),
        0,
        "the dead run's staging is gone"
    );
    assert!(
        !dir.path()
            .join(format!("shared.db.runs/{killed}.lock"))
            .exists(),
        "the dead run's lock file is removed"
    );
    rt.block_on(store.commit(&next, ChangeSet::default(), SyncStats::default()))
        .unwrap();

    let history = rt.block_on(store.history(&repo(), 10)).unwrap();
    let statuses: Vec<_> = history.iter().rev().map(|r| (r.id.0, r.status)).collect();
    assert_eq!(
        statuses,
        [
            (held, SyncStatus::Completed),
            (killed, SyncStatus::Abandoned),
            (next.id.0, SyncStatus::Completed)
        ]
    );
}

/// A run whose lock file is missing (opened by an older version, say) is held by its
/// lease alone: even with its process dead, the repository is refused until the lease
/// expires, then taken over.
fn without_a_lock_file_the_lease_decides() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let rt = runtime();
    let store = rt.block_on(SqliteStore::open(&db)).unwrap();
    let lease = Duration::from_millis(1_500);

    let mut victim = Proc::spawn(&db, lease.as_millis() as u64);
    assert_eq!(victim.recv(), "ready");
    victim.send("go stage");
    let killed = won_id(&victim.recv());
    assert_eq!(staged_rows(&db, killed), 1, "the victim staged an entry");
    victim.child.kill().unwrap();
    victim.child.wait().unwrap();
    std::fs::remove_file(dir.path().join(format!("shared.db.runs/{killed}.lock"))).unwrap();

    let e = rt
        .block_on(store.begin(run_start(&repo(), lease)))
        .expect_err("without a lock file, the lease holds");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    std::thread::sleep(lease + Duration::from_millis(200));
    let next = rt
        .block_on(store.begin(run_start(&repo(), lease)))
        .expect("the lease expired");
    let record = rt
        .block_on(store.run(&repo(), sync_core::SyncId(killed)))
        .unwrap();
    assert_eq!(record.status, SyncStatus::Abandoned);
    assert!(
        record.error.as_deref().unwrap().contains("lease expired"),
        "{record:?}"
    );
    assert_eq!(staged_rows(&db, killed), 0);
    rt.block_on(store.abort(&next, &RunEnd::Cancelled)).unwrap();
}
