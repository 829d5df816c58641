//! The events a running sync yields.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{CommitId, DiffCounts, ErrorReport, RepoKey, SourceNotice, SyncId, SyncRecord};

/// The phases of a sync, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Resolve the branch head and open the run.
    Prepare,
    /// Compare the commit's tree with the stored index.
    Scan,
    /// Fetch changed content, extract, embed and stage entries.
    Import,
    /// Activate everything in one atomic switch.
    Finalize,
}

/// Progress of the import phase. Every field only grows during a run, and each count
/// stays within its total.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Blobs imported so far.
    pub files_done: u64,
    /// Blobs to import.
    pub files_total: u64,
    /// Bytes imported so far.
    pub bytes_done: u64,
    /// Bytes to import.
    pub bytes_total: u64,
    /// Texts embedded by this run so far (texts whose vectors the store already had are
    /// not embedded again and not counted). Absent from older JSON: 0.
    #[serde(default)]
    pub texts_embedded: u64,
    /// Texts found so far that need embedding: grows while files are read, so it reaches
    /// its final value only when every file has been read. Absent from older JSON: 0.
    #[serde(default)]
    pub texts_to_embed: u64,
}

/// Why a scan lists the commit's whole tree instead of the changes since the last
/// completed run (see [`SyncEvent::FullScan`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
#[non_exhaustive]
pub enum FullScanReason {
    /// The repository has no completed run yet.
    FirstSync,
    /// The last completed run was made with other settings (policy, extractor or model),
    /// so every file is processed again.
    SettingsChanged,
    /// The source could not list the changes since the last run's commit.
    SourceCannotDiff {
        /// The source's reason: no such capability, the commit is gone (force push,
        /// shallow or pruned clone), the comparison is truncated, …
        detail: String,
    },
    /// The changes the source listed do not fit the stored index (it does not hold the
    /// last run's tree as the source lists it).
    IndexMismatch {
        /// What did not fit.
        detail: String,
    },
}

impl std::fmt::Display for FullScanReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::FirstSync => f.write_str("the first sync of this repository"),
            Self::SettingsChanged => f.write_str("the settings changed since the last run"),
            Self::SourceCannotDiff { detail } => write!(f, "{detail}"),
            Self::IndexMismatch { detail } => {
                write!(f, "the stored index does not match the last run: {detail}")
            }
        }
    }
}

/// What the stream of a sync yields.
///
/// A run yields exactly one [`Started`](SyncEvent::Started) first, the
/// [`Phase`](SyncEvent::Phase)s in order, progress that only grows, and exactly one
/// terminal event last: [`Completed`](SyncEvent::Completed),
/// [`Failed`](SyncEvent::Failed) or [`Cancelled`](SyncEvent::Cancelled).
///
/// Events serialize to JSON objects tagged by `"event"`, ready to forward as
/// Server-Sent Events:
///
/// ```
/// use sync_core::{Phase, SyncEvent};
/// let json = serde_json::to_string(&SyncEvent::Phase { phase: Phase::Scan })?;
/// assert_eq!(json, r#"{"event":"phase","phase":"scan"}"#);
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SyncEvent {
    /// The sync started.
    Started {
        /// The repository.
        repo: RepoKey,
        /// The branch asked for; `None` for the default branch.
        branch: Option<String>,
        /// When.
        at: DateTime<Utc>,
    },
    /// A phase began.
    Phase {
        /// Which.
        phase: Phase,
    },
    /// The run was opened in the store.
    Prepared {
        /// The run's id.
        sync_id: SyncId,
        /// The branch being synced.
        branch: String,
        /// Its head commit.
        commit: CommitId,
        /// The run before it.
        previous: Option<SyncId>,
    },
    /// The scan lists the commit's whole tree rather than the changes since the last
    /// completed run, for this reason. Sent in the scan phase, before
    /// [`Scanned`](SyncEvent::Scanned); absent when only the changes were listed or the
    /// head is unchanged.
    FullScan {
        /// Why.
        #[serde(flatten)]
        reason: FullScanReason,
    },
    /// The tree was compared with the stored index.
    Scanned {
        /// What changed, by class.
        counts: DiffCounts,
        /// Blobs whose content will be fetched.
        to_fetch: u64,
        /// Their total size.
        bytes_to_fetch: u64,
        /// The head and settings equal the last completed run's, so the tree was not read.
        unchanged_head: bool,
    },
    /// Import progress.
    Progress(Progress),
    /// The source is waiting for a rate limit, or retrying.
    Source(SourceNotice),
    /// The run completed; its state is now the active state.
    Completed {
        /// The finished run.
        record: Box<SyncRecord>,
    },
    /// The run failed; the active state is as it was before.
    Failed {
        /// The run, if it was opened.
        sync_id: Option<SyncId>,
        /// What went wrong.
        error: ErrorReport,
    },
    /// The run was cancelled; the active state is as it was before.
    Cancelled {
        /// The run, if it was opened.
        sync_id: Option<SyncId>,
    },
}

impl SyncEvent {
    /// Whether this is the last event of a run.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Cancelled { .. }
        )
    }

    /// The event's tag, as in its JSON (`"started"`, `"phase"`, …); handy as an SSE event
    /// name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Started { .. } => "started",
            Self::Phase { .. } => "phase",
            Self::Prepared { .. } => "prepared",
            Self::FullScan { .. } => "full_scan",
            Self::Scanned { .. } => "scanned",
            Self::Progress(_) => "progress",
            Self::Source(_) => "source",
            Self::Completed { .. } => "completed",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{FullScanReason, Progress, SyncEvent};

    #[test]
    fn a_full_scan_names_its_reason_in_json() {
        let event = SyncEvent::FullScan {
            reason: FullScanReason::SourceCannotDiff {
                detail: "commit 1234 is gone".into(),
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"event":"full_scan","reason":"source_cannot_diff","detail":"commit 1234 is gone"}"#
        );
        assert_eq!(serde_json::from_str::<SyncEvent>(&json).unwrap(), event);
        let first = SyncEvent::FullScan {
            reason: FullScanReason::FirstSync,
        };
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            r#"{"event":"full_scan","reason":"first_sync"}"#
        );
        assert_eq!(event.name(), "full_scan");
    }

    #[test]
    fn progress_without_the_text_counts_still_reads() {
        let old =
            r#"{"event":"progress","files_done":1,"files_total":2,"bytes_done":3,"bytes_total":4}"#;
        let event: SyncEvent = serde_json::from_str(old).unwrap();
        assert_eq!(
            event,
            SyncEvent::Progress(Progress {
                files_done: 1,
                files_total: 2,
                bytes_done: 3,
                bytes_total: 4,
                texts_embedded: 0,
                texts_to_embed: 0,
            })
        );
    }
}
