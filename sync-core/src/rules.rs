//! The history rules every store applies the same way: how a run that does not complete
//! ends, whether a run still holds its repository, which runs can be restored, how an index
//! is counted, and how search results are ranked. Stores store; these values and functions
//! decide.

use std::cmp::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    Error, ErrorReport, RepoKey, SearchHit, SkipReason, SyncId, SyncRecord, SyncRun, SyncStats,
    SyncStatus,
};

/// How a run that did not complete ends: the status a store records and the reason it
/// keeps in the run's [`error`](SyncRecord::error).
///
/// ```
/// use sync_core::{Error, RunEnd, SyncStatus};
/// let end = RunEnd::from_error(&Error::not_found("branch `dev` not found"));
/// assert_eq!(end.status(), SyncStatus::Failed);
/// assert_eq!(end.reason(), "branch `dev` not found");
/// assert_eq!(RunEnd::from_error(&Error::Cancelled).status(), SyncStatus::Cancelled);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEnd {
    /// An error stopped it.
    Failed {
        /// The error.
        error: ErrorReport,
    },
    /// Its caller stopped it (the event stream was dropped or cancelled).
    Cancelled,
    /// Its holder is gone: the lease expired without the run finishing, or the store saw
    /// that the process holding it had died.
    Abandoned {
        /// When the lease expired, or `None` when the holder was seen dead before that.
        lease_expired_at: Option<DateTime<Utc>>,
    },
}

impl RunEnd {
    /// The end of a run stopped by `error`: [`Error::Cancelled`] is
    /// [`RunEnd::Cancelled`], anything else [`RunEnd::Failed`].
    pub fn from_error(error: &Error) -> Self {
        match error {
            Error::Cancelled => Self::Cancelled,
            other => Self::Failed {
                error: other.report(),
            },
        }
    }

    /// A run whose lease expired at `at`.
    pub fn lease_expired(at: DateTime<Utc>) -> Self {
        Self::Abandoned {
            lease_expired_at: Some(at),
        }
    }

    /// A run whose holding process was seen dead.
    pub fn holder_died() -> Self {
        Self::Abandoned {
            lease_expired_at: None,
        }
    }

    /// The status the store records.
    pub fn status(&self) -> SyncStatus {
        match self {
            Self::Failed { .. } => SyncStatus::Failed,
            Self::Cancelled => SyncStatus::Cancelled,
            Self::Abandoned { .. } => SyncStatus::Abandoned,
        }
    }

    /// The reason the store keeps with the run.
    pub fn reason(&self) -> String {
        match self {
            Self::Failed { error } => error.message.clone(),
            Self::Cancelled => {
                "cancelled by its caller before it finished; nothing of it was activated".to_owned()
            }
            Self::Abandoned {
                lease_expired_at: Some(at),
            } => format!(
                "abandoned: its lease expired at {} without the run finishing",
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            ),
            Self::Abandoned {
                lease_expired_at: None,
            } => "abandoned: the process holding it ended without finishing the run".to_owned(),
        }
    }
}

/// Checks that `target` may be restored: only a completed run has a state to go back to.
pub fn check_restore_target(target: &SyncRecord) -> Result<(), Error> {
    if target.status == SyncStatus::Completed {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "run {} is {}; only a completed run can be restored",
            target.id, target.status
        )))
    }
}

impl SyncStats {
    /// Counts `count` indexed files with the skip reason `skip` into
    /// [`files`](Self::files) and the matching `skipped_*` count: how every store counts an
    /// index it did not build from a diff (a restore).
    pub fn count_indexed(&mut self, skip: Option<SkipReason>, count: u64) {
        self.files += count;
        match skip {
            Some(SkipReason::TooLarge) => self.skipped_too_large += count,
            Some(SkipReason::Binary) => self.skipped_binary += count,
            Some(SkipReason::Symlink) => self.symlinks += count,
            None => {}
        }
    }
}

/// Where a search hit ranks: by score, highest first; ties by path bytes, then ordinal, so
/// that every store returns the same order for the same data.
///
/// Stores that keep their own candidates (a top-k heap) rank them with this too.
#[derive(Debug, Clone, Copy)]
pub struct HitRank<'a> {
    /// The similarity, higher is better.
    pub score: f32,
    /// The entry's path bytes.
    pub path: &'a [u8],
    /// The entry's ordinal.
    pub ordinal: u32,
}

impl HitRank<'_> {
    /// `Less` when `self` ranks before (is better than) `other`.
    pub fn order(&self, other: &HitRank<'_>) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| (self.path, self.ordinal).cmp(&(other.path, other.ordinal)))
    }
}

impl SearchHit {
    /// This hit's [`HitRank`].
    pub fn rank(&self) -> HitRank<'_> {
        HitRank {
            score: self.score,
            path: self.entry.path.as_bytes(),
            ordinal: self.entry.ordinal,
        }
    }

    /// Sorts hits best first by [`HitRank::order`] and keeps the first `k`.
    pub fn rank_all(hits: &mut Vec<SearchHit>, k: usize) {
        hits.sort_by(|a, b| a.rank().order(&b.rank()));
        hits.truncate(k);
    }
}

/// What becomes of the running run `running` of `repo` that a store finds when it is asked
/// to open a run or to restore, given when its lease expires and the time `now`:
///
/// * its lease expired: it is abandoned with [`RunEnd::lease_expired`];
/// * its lease holds, but the store can prove its holder dead (`holder_dead`, asked only
///   then; a store that cannot tell answers `false`): it is abandoned with
///   [`RunEnd::holder_died`];
/// * otherwise the caller gets [`Error::repo_busy`].
///
/// The store records the returned end (and discards what the run staged) before it goes
/// on.
///
/// ```
/// use chrono::{Duration, Utc};
/// use sync_core::{ErrorKind, RepoKey, RunEnd, SyncId, SyncStatus, take_over};
/// let repo = RepoKey::new("git:/demo")?;
/// let now = Utc::now();
/// let busy = take_over(&repo, SyncId(7), now + Duration::seconds(60), now, || false);
/// assert_eq!(busy.unwrap_err().kind(), ErrorKind::Conflict);
/// let dead = take_over(&repo, SyncId(7), now + Duration::seconds(60), now, || true)?;
/// assert_eq!(dead, RunEnd::holder_died());
/// let expired = take_over(&repo, SyncId(7), now, now, || unreachable!())?;
/// assert_eq!(expired, RunEnd::lease_expired(now));
/// # Ok::<(), sync_core::Error>(())
/// ```
pub fn take_over(
    repo: &RepoKey,
    running: SyncId,
    lease_expires: DateTime<Utc>,
    now: DateTime<Utc>,
    holder_dead: impl FnOnce() -> bool,
) -> Result<RunEnd, Error> {
    if lease_expires <= now {
        Ok(RunEnd::lease_expired(lease_expires))
    } else if holder_dead() {
        Ok(RunEnd::holder_died())
    } else {
        Err(Error::repo_busy(repo, running, lease_expires))
    }
}

impl SyncStats {
    /// The stats a restore to a run with stats `target` starts from: a restore scans no
    /// tree, so what the target's scan left out of the index (excluded paths,
    /// submodules) is carried over; everything else is counted by the restore.
    pub fn restoring(target: &SyncStats) -> Self {
        Self {
            excluded: target.excluded,
            submodules: target.submodules,
            ..Self::default()
        }
    }

    /// Counts one path of a restore, given the version the active index holds (`current`)
    /// and the one the target held (`target`), `None` where there was none: the same
    /// version is unchanged, a version only now is deleted, only then added, two
    /// different ones modified.
    pub fn count_restored<T: PartialEq>(&mut self, current: Option<T>, target: Option<T>) {
        match (current, target) {
            (current, target) if current == target => self.unchanged += 1,
            (Some(_), None) => self.deleted += 1,
            (None, Some(_)) => self.added += 1,
            _ => self.modified += 1,
        }
    }
}

impl Error {
    /// The [`Error::NotFound`] of a store that has no run `id` of `repo` (none at all, or
    /// one of another repository or tenant, which must look the same).
    pub fn run_not_found(repo: &RepoKey, id: SyncId) -> Self {
        Self::not_found(format!("run {id} of `{repo}` does not exist"))
    }
}

impl Error {
    /// The [`Error::Conflict`] of a store whose new run (or restore) lost the race for the
    /// next place in `repo`'s history: [`Error::repo_busy`] when `running` (a run and the
    /// end of its lease) holds the repository now, else a conflict saying another run was
    /// appended first.
    pub fn lost_race(repo: &RepoKey, running: Option<(SyncId, DateTime<Utc>)>) -> Self {
        match running {
            Some((run, expires)) => Self::repo_busy(repo, run, expires),
            None => Self::conflict(format!(
                "another run of `{repo}` was appended to its history at the same time; look at its history and try again"
            )),
        }
    }
}

impl SyncRun {
    /// Checks that this run still holds its repository, as staging, renewing and committing
    /// require, given the status the store has recorded for it (`None`: the store has no
    /// such run of this repository): a missing run is [`Error::run_not_found`], an ended
    /// one [`Error::run_ended`].
    pub fn check_holds(&self, recorded: Option<SyncStatus>) -> Result<(), Error> {
        match recorded {
            None => Err(Error::run_not_found(&self.repo, self.id)),
            Some(SyncStatus::Running) => Ok(()),
            Some(status) => Err(Error::run_ended(self.id, status)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_score_then_path_then_ordinal() {
        let r = |score, path: &'static str, ordinal| HitRank {
            score,
            path: path.as_bytes(),
            ordinal,
        };
        assert_eq!(r(0.9, "b", 0).order(&r(0.5, "a", 0)), Ordering::Less);
        assert_eq!(r(0.5, "a", 1).order(&r(0.5, "b", 0)), Ordering::Less);
        assert_eq!(r(0.5, "a", 0).order(&r(0.5, "a", 1)), Ordering::Less);
        assert_eq!(r(0.5, "a", 0).order(&r(0.5, "a", 0)), Ordering::Equal);
    }

    #[test]
    fn run_ends_record_status_and_reason() {
        let failed = RunEnd::from_error(&Error::conflict("busy"));
        assert_eq!(
            (failed.status(), failed.reason()),
            (SyncStatus::Failed, "busy".to_owned())
        );
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            RunEnd::lease_expired(at).reason(),
            "abandoned: its lease expired at 2026-01-02T03:04:05.000Z without the run finishing"
        );
        assert_eq!(RunEnd::holder_died().status(), SyncStatus::Abandoned);
        let json = serde_json::to_value(RunEnd::Cancelled).unwrap();
        assert_eq!(json["outcome"], "cancelled");
    }

    #[test]
    fn indexed_files_are_counted_by_skip_reason() {
        let mut stats = SyncStats::default();
        stats.count_indexed(None, 3);
        stats.count_indexed(Some(SkipReason::Binary), 2);
        stats.count_indexed(Some(SkipReason::Symlink), 1);
        stats.count_indexed(Some(SkipReason::TooLarge), 4);
        assert_eq!(
            (
                stats.files,
                stats.skipped_binary,
                stats.symlinks,
                stats.skipped_too_large
            ),
            (10, 2, 1, 4)
        );
    }

    #[test]
    fn restored_paths_are_counted_by_what_changed() {
        let target = SyncStats {
            excluded: 2,
            submodules: 1,
            added: 9,
            ..SyncStats::default()
        };
        let mut stats = SyncStats::restoring(&target);
        assert_eq!((stats.excluded, stats.submodules, stats.added), (2, 1, 0));
        stats.count_restored(Some(1), Some(1));
        stats.count_restored(Some(1), None);
        stats.count_restored(None, Some(2));
        stats.count_restored(Some(1), Some(2));
        assert_eq!(
            (stats.unchanged, stats.deleted, stats.added, stats.modified),
            (1, 1, 1, 1)
        );
    }

    #[test]
    fn a_lost_race_names_the_winner_when_it_still_runs() {
        let repo = RepoKey::new("memory:demo").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&Utc);
        let busy = Error::lost_race(&repo, Some((SyncId(9), at)));
        assert_eq!(
            busy.to_string(),
            Error::repo_busy(&repo, SyncId(9), at).to_string()
        );
        let appended = Error::lost_race(&repo, None);
        assert_eq!(appended.kind(), crate::ErrorKind::Conflict);
        assert!(appended.to_string().contains("memory:demo"), "{appended}");
    }

    #[test]
    fn only_a_running_run_holds_its_repository() {
        let repo = RepoKey::new("memory:demo").unwrap();
        let run = SyncRun {
            id: SyncId(7),
            repo: repo.clone(),
            branch: "main".into(),
            commit: "1111111111111111111111111111111111111111".parse().unwrap(),
            previous: None,
            fingerprint: String::new(),
            lease: std::time::Duration::from_secs(60),
            started_at: Utc::now(),
        };
        assert!(run.check_holds(Some(SyncStatus::Running)).is_ok());
        let missing = run.check_holds(None).unwrap_err();
        assert_eq!(missing.kind(), crate::ErrorKind::NotFound);
        assert_eq!(
            missing.to_string(),
            Error::run_not_found(&repo, SyncId(7)).to_string()
        );
        for ended in [
            SyncStatus::Completed,
            SyncStatus::Failed,
            SyncStatus::Cancelled,
            SyncStatus::Abandoned,
        ] {
            let e = run.check_holds(Some(ended)).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::Conflict, "{ended}");
            assert!(e.to_string().contains(ended.as_str()), "{e}");
        }
    }
}
