//! Finalize: the one atomic switch that makes a run's work visible.

use super::Phases;
use super::scan::{Plan, new_file};
use crate::{ChangeSet, Error, SyncRecord, SyncRun, SyncStatus};

/// Completes the skip counts of the plan's stats and commits its changes. A commit whose
/// answer was lost is asked after: if the run completed, that is the outcome.
pub(super) async fn run(
    phases: Phases<'_>,
    run: &SyncRun,
    plan: Plan,
) -> Result<SyncRecord, Error> {
    let s = phases.syncer;
    let Plan {
        changes,
        mut stats,
        mut skips,
        ..
    } = plan;
    for change in &changes {
        if let Some(file) = new_file(change) {
            skips.add(file.skip, 1);
        }
    }
    skips.write_to(&mut stats);
    match s.store.commit(run, ChangeSet { changes }, stats).await {
        Ok(record) => Ok(record),
        // The commit may have landed although its answer was lost: ask.
        Err(e) => match s.store.run(&s.repo, run.id).await {
            Ok(record) if record.status == SyncStatus::Completed => Ok(record),
            _ => Err(e),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Bench;
    use super::super::{import, scan};
    use super::*;
    use std::sync::Arc;

    use crate::testkit::{FaultMode, FaultPlan, FaultyStore};
    use crate::{EntryKind, MemoryFile, SyncStore, Syncer};

    #[tokio::test]
    async fn commits_the_plan_with_its_skip_counts() {
        let bench = Bench::new();
        bench
            .source
            .commit_files(
                "main",
                vec![
                    MemoryFile::file("a.txt", "a\n").unwrap(),
                    MemoryFile::file("b.bin", b"\0".to_vec()).unwrap(),
                    MemoryFile::new("link", "a.txt", EntryKind::Symlink).unwrap(),
                ],
            )
            .unwrap();
        let run_ = bench.begin().await;
        let mut plan = scan::run(bench.phases(), &run_).await.unwrap();
        import::run(bench.phases(), &run_, &mut plan).await.unwrap();
        let record = run(bench.phases(), &run_, plan).await.unwrap();
        assert_eq!(record.status, SyncStatus::Completed);
        assert_eq!(record.stats.files, 3);
        assert_eq!(record.stats.skipped_binary, 1);
        assert_eq!(record.stats.symlinks, 1);
        assert_eq!(record.stats.entries_written, 1);
        let index = bench.store.file_index(bench.syncer.repo()).await.unwrap();
        assert_eq!(index.len(), 3);
    }

    /// Opens a run over a store whose `commit` fails in `mode`, and finalizes it.
    async fn finalize_with_faulty_commit(mode: FaultMode) -> (Bench, Result<SyncRecord, Error>) {
        let bench = Bench::new();
        bench.source.commit("main", [("a.txt", "a\n")]).unwrap();
        let faulty = Arc::new(FaultyStore::new(
            bench.store.clone(),
            FaultPlan::fail_on("commit", mode),
        ));
        let source = bench.source.clone();
        let bench = bench.with(|_| Syncer::new(source, faulty).unwrap());
        let run_ = bench.begin().await;
        let mut plan = scan::run(bench.phases(), &run_).await.unwrap();
        import::run(bench.phases(), &run_, &mut plan).await.unwrap();
        let outcome = run(bench.phases(), &run_, plan).await;
        (bench, outcome)
    }

    #[tokio::test]
    async fn a_commit_whose_answer_was_lost_is_asked_after() {
        let (bench, outcome) = finalize_with_faulty_commit(FaultMode::After).await;
        let record = outcome.expect("the commit landed");
        assert_eq!(record.status, SyncStatus::Completed);
        assert_eq!(
            bench
                .store
                .file_index(bench.syncer.repo())
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test]
    async fn a_commit_that_never_landed_fails() {
        let (bench, outcome) = finalize_with_faulty_commit(FaultMode::Before).await;
        let err = outcome.unwrap_err();
        assert!(err.to_string().contains("injected fault"), "{err}");
        assert!(
            bench
                .store
                .file_index(bench.syncer.repo())
                .await
                .unwrap()
                .is_empty()
        );
    }
}
