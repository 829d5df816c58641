//! Scan: lists the commit's tree through the file policy, diffs it with the stored index
//! and decides what each changed path needs, as a [`Plan`].

use std::collections::HashMap;

use super::Phases;
use crate::{
    BlobId, Change, DiffCounts, EntryKind, Error, FileChange, FileIndex, FilePolicy,
    FullScanReason, IndexedFile, Phase, RepoPath, SkipReason, SyncEvent, SyncRecord, SyncRun,
    SyncStats, Tree, TreeChange, TreeChanges, TreeEntry, TreeItem, diff, diff_all,
};

/// What the import phase works from, and finalize commits.
pub(super) struct Plan {
    pub(super) changes: Vec<FileChange>,
    /// One entry per distinct blob to fetch.
    pub(super) fetch: Vec<TreeEntry>,
    /// For each blob to fetch, the changes (all `Upsert`) waiting for its content.
    pub(super) waiting: HashMap<BlobId, Vec<usize>>,
    pub(super) stats: SyncStats,
    /// Skip counts of the index, minus the files this run replaces or removes.
    pub(super) skips: SkipCounts,
}

/// Files indexed without entries, by reason; signed while changes are applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SkipCounts {
    pub(super) too_large: i64,
    pub(super) binary: i64,
    pub(super) symlink: i64,
}

impl SkipCounts {
    pub(super) fn add(&mut self, reason: Option<SkipReason>, by: i64) {
        match reason {
            Some(SkipReason::TooLarge) => self.too_large += by,
            Some(SkipReason::Binary) => self.binary += by,
            Some(SkipReason::Symlink) => self.symlink += by,
            None => {}
        }
    }

    pub(super) fn write_to(self, stats: &mut SyncStats) {
        stats.skipped_too_large = self.too_large.max(0) as u64;
        stats.skipped_binary = self.binary.max(0) as u64;
        stats.symlinks = self.symlink.max(0) as u64;
    }
}

/// Sends [`Phase::Scan`], plans the run and sends [`SyncEvent::Scanned`].
///
/// When the last completed run synced the same commit with the same settings, nothing is
/// read from the source and the plan is empty. When it synced another commit with the same
/// settings, the source lists the changes between the two commits
/// ([`RepoSource::changes`](crate::RepoSource::changes)), the store reads the indexed files
/// at the changed paths only ([`SyncStore::indexed_files`](crate::SyncStore::indexed_files)),
/// and the plan diffs those with the changes applied to them: the work follows the change,
/// and the rest of the index is counted from the last run's stats. Otherwise — or when the source cannot list them — the tree is
/// listed with [`RepoSource::filtered_tree`](crate::RepoSource::filtered_tree), so nothing
/// of a path outside the policy is read, and [`SyncEvent::FullScan`] says why; every file
/// is processed again when the settings changed.
pub(super) async fn run(phases: Phases<'_>, run: &SyncRun) -> Result<Plan, Error> {
    let s = phases.syncer;
    phases
        .emit
        .send(SyncEvent::Phase { phase: Phase::Scan })
        .await?;
    let last = s.store.last_completed(&s.repo).await?;
    match &last {
        Some(last) if last.commit == run.commit && last.fingerprint == run.fingerprint => {
            let stats = SyncStats {
                unchanged: last.stats.files,
                excluded: last.stats.excluded,
                submodules: last.stats.submodules,
                ..SyncStats::default()
            };
            let skips = SkipCounts {
                too_large: last.stats.skipped_too_large as i64,
                binary: last.stats.skipped_binary as i64,
                symlink: last.stats.symlinks as i64,
            };
            phases
                .emit
                .send(SyncEvent::Scanned {
                    counts: DiffCounts {
                        unchanged: last.stats.files,
                        ..DiffCounts::default()
                    },
                    to_fetch: 0,
                    bytes_to_fetch: 0,
                    unchanged_head: true,
                })
                .await?;
            Ok(Plan {
                changes: Vec::new(),
                fetch: Vec::new(),
                waiting: HashMap::new(),
                stats,
                skips,
            })
        }
        _ => {
            let reprocess = last
                .as_ref()
                .is_some_and(|l| l.fingerprint != run.fingerprint);
            let sides = sides(phases, run, last.as_ref()).await?;
            let plan = plan(s, &sides, reprocess);
            phases
                .emit
                .send(SyncEvent::Scanned {
                    counts: DiffCounts {
                        added: plan.stats.added,
                        modified: plan.stats.modified,
                        deleted: plan.stats.deleted,
                        renamed: plan.stats.renamed,
                        unchanged: plan.stats.unchanged,
                    },
                    to_fetch: plan.fetch.len() as u64,
                    bytes_to_fetch: plan.fetch.iter().map(|e| e.size).sum(),
                    unchanged_head: false,
                })
                .await?;
            Ok(plan)
        }
    }
}

/// What the plan diffs: the old side (stored files), the new side (a tree through the
/// policy) and what lies outside both.
struct Sides {
    /// The new side: the whole tree, or only the changed paths.
    tree: Tree,
    /// The old side: the whole active index, or only its files at the changed paths.
    index: FileIndex,
    /// Indexed files outside both sides, unchanged by this run (0 for a full listing).
    untouched: u64,
    /// Skip counts of the whole active index before this run.
    skips: SkipCounts,
}

impl Sides {
    /// Both sides whole.
    fn full(tree: Tree, index: FileIndex) -> Self {
        let mut skips = SkipCounts::default();
        for f in index.files() {
            skips.add(f.skip, 1);
        }
        Self {
            tree,
            index,
            untouched: 0,
            skips,
        }
    }

    /// Both sides at the changed paths only; the rest of the index is counted from the
    /// `last` run's stats. Fails, saying why, when those counts cannot hold the files read.
    fn changed(tree: Tree, index: FileIndex, last: &SyncStats) -> Result<Self, String> {
        let mut read = SkipCounts::default();
        for f in index.files() {
            read.add(f.skip, 1);
        }
        let skips = SkipCounts {
            too_large: last.skipped_too_large as i64,
            binary: last.skipped_binary as i64,
            symlink: last.symlinks as i64,
        };
        let fits = read.too_large <= skips.too_large
            && read.binary <= skips.binary
            && read.symlink <= skips.symlink;
        let untouched = last.files.checked_sub(index.len() as u64);
        match untouched {
            Some(untouched) if fits => Ok(Self {
                tree,
                index,
                untouched,
                skips,
            }),
            _ => Err(format!(
                "the last run counted {} files ({} too large, {} binary, {} symlinks), fewer than the index holds at the changed paths ({} files: {} too large, {} binary, {} symlinks)",
                last.files,
                last.skipped_too_large,
                last.skipped_binary,
                last.symlinks,
                index.len(),
                read.too_large,
                read.binary,
                read.symlink
            )),
        }
    }
}

/// The sides to diff: from the changes since `last` when the source lists them (the stored
/// files at the changed paths only), else the whole tree listed (announced with
/// [`SyncEvent::FullScan`]) and the whole index.
async fn sides(
    phases: Phases<'_>,
    run: &SyncRun,
    last: Option<&SyncRecord>,
) -> Result<Sides, Error> {
    let s = phases.syncer;
    let reason = match last {
        None => FullScanReason::FirstSync,
        Some(last) if last.fingerprint != run.fingerprint => FullScanReason::SettingsChanged,
        Some(last) => {
            let changes = s
                .source
                .changes(&last.commit, &run.commit, &s.policy)
                .await?;
            let reason = match changes {
                TreeChanges::Listed(changes) => {
                    let paths: Vec<RepoPath> = changes.iter().map(|c| c.path.clone()).collect();
                    let index = s.store.indexed_files(&s.repo, &paths).await?;
                    let sides = apply_changes(&index, changes, &s.policy, &last.stats)
                        .and_then(|tree| Sides::changed(tree, index, &last.stats));
                    match sides {
                        Ok(sides) => return Ok(sides),
                        Err(detail) => FullScanReason::IndexMismatch { detail },
                    }
                }
                TreeChanges::Unavailable { reason } => {
                    FullScanReason::SourceCannotDiff { detail: reason }
                }
            };
            tracing::info!(repo = %s.repo, %reason, "listing the whole tree");
            reason
        }
    };
    phases.emit.send(SyncEvent::FullScan { reason }).await?;
    // The two reads are independent: overlap them.
    let (tree, index) = tokio::try_join!(
        s.source.filtered_tree(&run.commit, &s.policy),
        s.store.file_index(&s.repo)
    )?;
    // Filtered again, so that a source which ignored the policy still yields the exact
    // mirror (for one that applied it, this drops nothing).
    Ok(Sides::full(tree.filter(&s.policy), index))
}

/// The new commit's tree through `policy`: the stored `index` (the last run's tree
/// through the same policy, whole or only at the changed paths) with the source's `changes`
/// applied, the policy applied to each changed path exactly as a full listing applies it.
/// Submodules and excluded paths are counted from the last run's `stats`. Given only the
/// index at the changed paths, it yields the new tree at those paths only.
///
/// Fails, saying why, when the changes do not fit the index: a path listed twice, an old
/// side the index does not hold, a new admitted blob without its size, counts below zero.
fn apply_changes(
    index: &FileIndex,
    mut changes: Vec<TreeChange>,
    policy: &FilePolicy,
    last: &SyncStats,
) -> Result<Tree, String> {
    changes.sort_unstable_by(|a, b| a.path.cmp(&b.path));
    if let Some(w) = changes.windows(2).find(|w| w[0].path == w[1].path) {
        return Err(format!("the source listed `{}` twice", w[0].path));
    }
    let files = index.files();
    let mut entries: Vec<TreeEntry> = Vec::with_capacity(files.len() + changes.len());
    let (mut excluded, mut submodules) = (last.excluded as i64, last.submodules as i64);
    let mut at = 0;
    for change in &changes {
        while let Some(file) = files.get(at).filter(|f| f.entry.path < change.path) {
            entries.push(file.entry.clone());
            at += 1;
        }
        let stored = files.get(at).filter(|f| f.entry.path == change.path);
        if stored.is_some() {
            at += 1;
        }
        let admitted = policy.admits(&change.path);
        let before_matches = match change.before {
            Some(TreeItem::Blob { blob, kind, .. }) if admitted => {
                stored.is_some_and(|f| f.entry.blob == blob && f.entry.kind == kind)
            }
            Some(TreeItem::Blob { .. }) => {
                excluded -= 1;
                stored.is_none()
            }
            Some(TreeItem::Submodule) => {
                submodules -= 1;
                stored.is_none()
            }
            None => stored.is_none(),
        };
        if !before_matches {
            return Err(format!(
                "the index holds {} at `{}` where the source had {}",
                stored.map_or_else(
                    || "nothing".to_owned(),
                    |f| format!("{} {}", f.entry.kind, f.entry.blob)
                ),
                change.path,
                describe(change.before.as_ref())
            ));
        }
        match change.after {
            Some(TreeItem::Blob { blob, kind, size }) if admitted => {
                let size = size.ok_or_else(|| {
                    format!(
                        "the source gave no size for the new blob of `{}`",
                        change.path
                    )
                })?;
                entries.push(TreeEntry::new(change.path.clone(), blob, size, kind));
            }
            Some(TreeItem::Blob { .. }) => excluded += 1,
            Some(TreeItem::Submodule) => submodules += 1,
            None => {}
        }
    }
    entries.extend(files[at..].iter().map(|f| f.entry.clone()));
    if excluded < 0 || submodules < 0 {
        return Err(format!(
            "the changes remove more excluded paths or submodules than the last run counted ({} excluded, {} submodules)",
            last.excluded, last.submodules
        ));
    }
    Ok(Tree::new(entries)
        .map_err(|e| e.to_string())?
        .with_submodules(submodules as u64)
        .with_excluded(excluded as u64))
}

/// An item as an index-mismatch message names it.
fn describe(item: Option<&TreeItem>) -> String {
    match item {
        None => "nothing".to_owned(),
        Some(TreeItem::Submodule) => "a submodule".to_owned(),
        Some(TreeItem::Blob { blob, kind, .. }) => format!("{kind} {blob}"),
    }
}

/// Diffs the new side with the old and decides what each changed path needs. Renames pair
/// a deleted and an added path, both of which are changed paths, so diffing only the changed
/// paths finds exactly the changes of a diff of the whole trees.
fn plan(s: &super::Syncer, sides: &Sides, reprocess: bool) -> Plan {
    let Sides {
        tree,
        index,
        untouched,
        skips,
    } = sides;
    let admitted = tree.entries();
    let d = if reprocess {
        diff_all(index.files(), admitted)
    } else {
        diff(index.files(), admitted)
    };

    let mut plan = Plan {
        changes: Vec::with_capacity(d.changes.len()),
        fetch: Vec::new(),
        waiting: HashMap::new(),
        stats: SyncStats {
            added: d.counts.added,
            modified: d.counts.modified,
            deleted: d.counts.deleted,
            renamed: d.counts.renamed,
            unchanged: d.counts.unchanged + untouched,
            excluded: tree.excluded(),
            submodules: tree.submodules(),
            ..SyncStats::default()
        },
        skips: *skips,
    };
    for change in d.changes {
        match change {
            Change::Added(new) => plan.upsert(new, &s.policy),
            Change::Deleted(old) => {
                plan.skips.add(old.skip, -1);
                plan.changes
                    .push(FileChange::Delete(old.entry.path.clone()));
            }
            Change::Modified { old, new } => {
                plan.skips.add(old.skip, -1);
                let same_content = old.entry.blob == new.blob
                    && old.entry.kind != EntryKind::Symlink
                    && new.kind != EntryKind::Symlink;
                if same_content && !reprocess {
                    plan.changes
                        .push(FileChange::Retype(IndexedFile::new(new.clone(), old.skip)));
                } else {
                    plan.upsert(new, &s.policy);
                }
            }
            Change::Renamed { from, to } => {
                plan.skips.add(from.skip, -1);
                let before_fetch = s.policy.skip_without_content(to);
                let carried = match (from.skip, before_fetch) {
                    (Some(SkipReason::Binary), None) => Some(Some(SkipReason::Binary)),
                    (old, new) if old == new => Some(old),
                    _ => None,
                };
                match carried {
                    Some(skip) if !reprocess => plan.changes.push(FileChange::Rename {
                        from: from.entry.path.clone(),
                        to: IndexedFile::new(to.clone(), skip),
                    }),
                    _ => {
                        plan.changes
                            .push(FileChange::Delete(from.entry.path.clone()));
                        plan.upsert(to, &s.policy);
                    }
                }
            }
            Change::Unchanged { old, new } => {
                plan.skips.add(old.skip, -1);
                plan.upsert(new, &s.policy);
            }
        }
    }
    plan
}

impl Plan {
    /// Records a new version of a path: skipped without content, or waiting for its blob.
    fn upsert(&mut self, entry: &TreeEntry, policy: &FilePolicy) {
        let skip = policy.skip_without_content(entry);
        let at = self.changes.len();
        self.changes
            .push(FileChange::Upsert(IndexedFile::new(entry.clone(), skip)));
        if skip.is_none() {
            let waiting = self.waiting.entry(entry.blob).or_default();
            if waiting.is_empty() {
                self.fetch.push(entry.clone());
            }
            waiting.push(at);
        }
    }
}

/// The file a change leaves in the index, if any.
pub(super) fn new_file(change: &FileChange) -> Option<&IndexedFile> {
    match change {
        FileChange::Upsert(f) | FileChange::Retype(f) | FileChange::Rename { to: f, .. } => Some(f),
        FileChange::Delete(_) => None,
    }
}

/// The path a change is about (the new path of a rename).
pub(super) fn change_path(change: &FileChange) -> &RepoPath {
    match change {
        FileChange::Upsert(f) | FileChange::Retype(f) | FileChange::Rename { to: f, .. } => {
            &f.entry.path
        }
        FileChange::Delete(p) => p,
    }
}

/// The size of the blob a change leaves in the index (0 for a delete).
pub(super) fn change_size(change: &FileChange) -> u64 {
    new_file(change).map_or(0, |f| f.entry.size)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::Bench;
    use super::*;
    use crate::{ChangeSet, EntryKind, MemoryFile, SyncStore, Syncer};
    use std::sync::Arc;

    fn files(list: &[(&str, &str)]) -> Vec<MemoryFile> {
        list.iter()
            .map(|(p, d)| MemoryFile::file(p, d.to_string()).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn a_first_scan_adds_every_admitted_file_and_counts_the_rest() {
        let mut bench = Bench::new().with(|s| {
            s.with_policy(
                FilePolicy::builder()
                    .exclude("vendor/**")
                    .max_file_size(8)
                    .build()
                    .unwrap(),
            )
        });
        let mut list = files(&[
            ("a.txt", "same\n"),
            ("b.txt", "same\n"),
            ("big.txt", "far too large\n"),
            ("vendor/x.rs", "x\n"),
        ]);
        list.push(MemoryFile::new("link", "a.txt", EntryKind::Symlink).unwrap());
        list.push(MemoryFile::submodule("sub").unwrap());
        bench.source.commit_files("main", list).unwrap();
        let run_ = bench.begin().await;
        let plan = run(bench.phases(), &run_).await.unwrap();
        assert_eq!(plan.stats.added, 4);
        assert_eq!(plan.stats.excluded, 1, "vendor/x.rs");
        assert_eq!(plan.stats.submodules, 1);
        assert_eq!(plan.changes.len(), 4);
        assert_eq!(
            plan.fetch.len(),
            1,
            "two paths share one blob; big and link need none"
        );
        assert_eq!(plan.waiting.values().next().map(Vec::len), Some(2));
        let events = bench.events();
        assert_eq!(events[0], SyncEvent::Phase { phase: Phase::Scan });
        assert_eq!(
            events[1],
            SyncEvent::FullScan {
                reason: FullScanReason::FirstSync
            },
            "a first sync lists the whole tree, and says so"
        );
        assert!(
            matches!(
                events[2],
                SyncEvent::Scanned {
                    to_fetch: 1,
                    bytes_to_fetch: 5,
                    unchanged_head: false,
                    ..
                }
            ),
            "{events:?}"
        );
    }

    /// A source whose unfiltered `tree` fails, as a repository with a broken object at
    /// an excluded path would.
    #[derive(Debug)]
    struct OnlyFiltered(std::sync::Arc<crate::MemorySource>);

    #[async_trait::async_trait]
    impl crate::RepoSource for OnlyFiltered {
        fn identity(&self) -> String {
            self.0.identity()
        }
        async fn branches(&self) -> Result<Vec<crate::Branch>, Error> {
            self.0.branches().await
        }
        async fn default_branch(&self) -> Result<String, Error> {
            self.0.default_branch().await
        }
        async fn head(&self, branch: &str) -> Result<crate::CommitId, Error> {
            self.0.head(branch).await
        }
        async fn tree(&self, _commit: &crate::CommitId) -> Result<crate::Tree, Error> {
            Err(Error::not_found("the object of `vendor/x.rs` is missing"))
        }
        async fn filtered_tree(
            &self,
            commit: &crate::CommitId,
            policy: &FilePolicy,
        ) -> Result<crate::Tree, Error> {
            Ok(self.0.tree(commit).await?.filter(policy))
        }
        fn contents(
            &self,
            commit: &crate::CommitId,
            wanted: Vec<TreeEntry>,
        ) -> futures::stream::BoxStream<'_, Result<crate::Blob, Error>> {
            self.0.contents(commit, wanted)
        }
    }

    #[tokio::test]
    async fn the_tree_is_listed_through_the_policy() {
        let bench = Bench::new();
        bench
            .source
            .commit_files("main", files(&[("a.txt", "a\n"), ("vendor/x.rs", "x\n")]))
            .unwrap();
        let (source, store) = (bench.source.clone(), bench.store.clone());
        let bench = bench.with(|_| {
            Syncer::new(std::sync::Arc::new(OnlyFiltered(source)), store)
                .unwrap()
                .with_policy(FilePolicy::builder().exclude("vendor/**").build().unwrap())
        });
        let run_ = bench.begin().await;
        let plan = run(bench.phases(), &run_).await.unwrap();
        assert_eq!((plan.stats.added, plan.stats.excluded), (1, 1));
    }

    #[tokio::test]
    async fn an_unchanged_head_reads_nothing() {
        let mut bench = Bench::new();
        bench
            .source
            .commit_files("main", files(&[("a.txt", "a\n")]))
            .unwrap();
        let first = bench.begin().await;
        let plan = run(bench.phases(), &first).await.unwrap();
        let mut stats = plan.stats;
        plan.skips.write_to(&mut stats);
        bench
            .store
            .commit(
                &first,
                ChangeSet {
                    changes: plan.changes,
                },
                stats,
            )
            .await
            .unwrap();
        bench.events();

        let second = bench.begin().await;
        let plan = run(bench.phases(), &second).await.unwrap();
        assert!(plan.changes.is_empty() && plan.fetch.is_empty());
        assert_eq!(plan.stats.unchanged, 1);
        assert!(
            matches!(
                bench.events()[1],
                SyncEvent::Scanned {
                    unchanged_head: true,
                    ..
                }
            ),
            "the shortcut is reported"
        );
    }

    #[tokio::test]
    async fn new_settings_reprocess_unchanged_files() {
        let bench = Bench::new();
        bench
            .source
            .commit_files("main", files(&[("a.txt", "a\n")]))
            .unwrap();
        let first = bench.begin().await;
        let plan = run(bench.phases(), &first).await.unwrap();
        bench
            .store
            .commit(
                &first,
                ChangeSet {
                    changes: plan.changes,
                },
                plan.stats,
            )
            .await
            .unwrap();

        let bench = bench.with(|s| s.with_extractor(std::sync::Arc::new(crate::WholeFile)));
        let second = bench.begin().await;
        let plan = run(bench.phases(), &second).await.unwrap();
        assert_eq!(plan.fetch.len(), 1, "the unchanged file is fetched again");
        assert!(matches!(plan.changes[..], [FileChange::Upsert(_)]));
    }

    /// The events of one whole sync of `main` by the bench's syncer.
    async fn sync_events(bench: &Bench) -> Vec<SyncEvent> {
        use futures::StreamExt;
        let events: Vec<SyncEvent> = bench.syncer.run(Some("main")).collect().await;
        assert!(
            matches!(events.last(), Some(SyncEvent::Completed { .. })),
            "{events:?}"
        );
        events
    }

    fn full_scan(events: &[SyncEvent]) -> Option<&FullScanReason> {
        events.iter().find_map(|e| match e {
            SyncEvent::FullScan { reason } => Some(reason),
            _ => None,
        })
    }

    #[tokio::test]
    async fn each_full_scan_says_why_and_a_new_head_lists_only_changes() {
        let bench = Bench::new();
        bench.source.commit("main", [("a.txt", "a\n")]).unwrap();
        let events = sync_events(&bench).await;
        assert_eq!(full_scan(&events), Some(&FullScanReason::FirstSync));

        bench
            .source
            .commit("main", [("a.txt", "a\n"), ("b.txt", "b\n")])
            .unwrap();
        let events = sync_events(&bench).await;
        assert_eq!(full_scan(&events), None, "the changes were listed");

        // Other settings: a full scan that reprocesses every file.
        let bench = bench.with(|s| s.with_extractor(std::sync::Arc::new(crate::WholeFile)));
        bench
            .source
            .commit("main", [("a.txt", "a\n"), ("b.txt", "b2\n")])
            .unwrap();
        let events = sync_events(&bench).await;
        assert_eq!(full_scan(&events), Some(&FullScanReason::SettingsChanged));

        // The last synced commit is gone (a force push and garbage collection).
        let last = bench
            .store
            .last_completed(bench.syncer.repo())
            .await
            .unwrap()
            .unwrap()
            .commit;
        bench.source.commit("main", [("c.txt", "c\n")]).unwrap();
        assert!(bench.source.forget_commit(&last));
        let events = sync_events(&bench).await;
        match full_scan(&events) {
            Some(FullScanReason::SourceCannotDiff { detail }) => {
                assert!(detail.contains(&last.to_hex()), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let index = bench.store.file_index(bench.syncer.repo()).await.unwrap();
        let paths: Vec<String> = index
            .files()
            .iter()
            .map(|f| f.entry.path.to_string())
            .collect();
        assert_eq!(paths, ["c.txt"]);
    }

    /// A new head reads the stored index at the changed paths only, and counts the rest
    /// from the last run.
    #[tokio::test]
    async fn a_new_head_reads_the_index_at_the_changed_paths_only() {
        use crate::testkit::{FaultPlan, FaultyStore};
        let bench = Bench::new();
        let plan = FaultPlan::count_only();
        let store = Arc::new(FaultyStore::new(bench.store.clone(), plan.clone()));
        let source = bench.source.clone();
        let bench = bench.with(|_| Syncer::new(source, store).unwrap());
        let many: Vec<(String, String)> = (0..20)
            .map(|i| (format!("f{i:02}.txt"), format!("{i}\n")))
            .collect();
        bench.source.commit("main", many.clone()).unwrap();
        sync_events(&bench).await;
        let first = plan.log();
        assert!(
            first.contains(&"file_index"),
            "a first sync reads the index: {first:?}"
        );

        let mut edited = many;
        edited[3].1 = "three\n".to_owned();
        edited.remove(7);
        edited.push(("g.txt".to_owned(), "g\n".to_owned()));
        bench.source.commit("main", edited).unwrap();
        let events = sync_events(&bench).await;
        let second = &plan.log()[first.len()..];
        assert!(
            second.contains(&"indexed_files") && !second.contains(&"file_index"),
            "{second:?}"
        );
        let Some(SyncEvent::Completed { record }) = events.last() else {
            panic!("{events:?}");
        };
        let s = &record.stats;
        assert_eq!(
            (s.files, s.added, s.modified, s.deleted, s.unchanged),
            (20, 1, 1, 1, 18)
        );
    }

    #[test]
    fn counts_that_cannot_hold_the_changed_files_are_refused() {
        let index = FileIndex::new(vec![
            indexed("a", "a", EntryKind::File),
            indexed("l", "a", EntryKind::Symlink),
        ])
        .unwrap();
        let mut with_link = index.files().to_vec();
        with_link[1].skip = Some(SkipReason::Symlink);
        let index = FileIndex::new(with_link).unwrap();
        let tree = || Tree::new(Vec::new()).unwrap();
        let last = SyncStats {
            files: 5,
            symlinks: 1,
            ..SyncStats::default()
        };
        let sides = Sides::changed(tree(), index.clone(), &last).unwrap();
        assert_eq!(sides.untouched, 3);
        assert_eq!(sides.skips.symlink, 1);
        let err = Sides::changed(
            tree(),
            index.clone(),
            &SyncStats {
                symlinks: 0,
                ..last
            },
        )
        .err()
        .unwrap();
        assert!(err.contains("0 symlinks"), "{err}");
        let err = Sides::changed(tree(), index, &SyncStats { files: 1, ..last })
            .err()
            .unwrap();
        assert!(err.contains("counted 1 files"), "{err}");
    }

    /// A source that cannot list changes: every sync lists the whole tree, and says so.
    #[tokio::test]
    async fn a_source_without_the_capability_still_syncs() {
        let bench = Bench::new();
        let (source, store) = (bench.source.clone(), bench.store.clone());
        let bench =
            bench.with(|_| Syncer::new(std::sync::Arc::new(OnlyFiltered(source)), store).unwrap());
        bench.source.commit("main", [("a.txt", "a\n")]).unwrap();
        sync_events(&bench).await;
        bench.source.commit("main", [("b.txt", "a\n")]).unwrap();
        let events = sync_events(&bench).await;
        match full_scan(&events) {
            Some(FullScanReason::SourceCannotDiff { detail }) => {
                assert!(detail.contains("cannot list the changes"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        let last = bench
            .store
            .last_completed(bench.syncer.repo())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((last.stats.renamed, last.stats.files), (1, 1));
    }

    fn indexed(path: &str, data: &str, kind: EntryKind) -> IndexedFile {
        IndexedFile::new(
            TreeEntry::new(
                RepoPath::new(path).unwrap(),
                BlobId::for_content(data.as_bytes()),
                data.len() as u64,
                kind,
            ),
            None,
        )
    }

    fn blob(data: &str, kind: EntryKind, size: bool) -> Option<TreeItem> {
        Some(TreeItem::Blob {
            blob: BlobId::for_content(data.as_bytes()),
            kind,
            size: size.then_some(data.len() as u64),
        })
    }

    fn change(path: &str, before: Option<TreeItem>, after: Option<TreeItem>) -> TreeChange {
        TreeChange {
            path: RepoPath::new(path).unwrap(),
            before,
            after,
        }
    }

    #[test]
    fn changes_apply_to_the_index_with_the_policy_and_counts() {
        let policy = FilePolicy::builder().exclude("vendor/**").build().unwrap();
        let index = FileIndex::new(vec![
            indexed("a", "a", EntryKind::File),
            indexed("b", "b", EntryKind::File),
            indexed("d/x", "x", EntryKind::File),
        ])
        .unwrap();
        let last = SyncStats {
            excluded: 1,
            submodules: 1,
            ..SyncStats::default()
        };
        let changes = vec![
            change("d/x", blob("x", EntryKind::File, false), None),
            change(
                "b",
                blob("b", EntryKind::File, false),
                blob("b", EntryKind::Executable, true),
            ),
            change("vendor/v", blob("v", EntryKind::File, false), None),
            change(
                "sub",
                Some(TreeItem::Submodule),
                blob("s", EntryKind::File, true),
            ),
            change("d", None, blob("x", EntryKind::File, true)),
            change("vendor/w", None, blob("w", EntryKind::File, false)),
            change("vendor/z", None, blob("z", EntryKind::File, false)),
        ];
        let tree = apply_changes(&index, changes, &policy, &last).unwrap();
        let got: Vec<(String, EntryKind)> = tree
            .entries()
            .iter()
            .map(|e| (e.path.to_string(), e.kind))
            .collect();
        assert_eq!(
            got,
            [
                ("a".to_owned(), EntryKind::File),
                ("b".to_owned(), EntryKind::Executable),
                ("d".to_owned(), EntryKind::File),
                ("sub".to_owned(), EntryKind::File),
            ]
        );
        assert_eq!((tree.excluded(), tree.submodules()), (2, 0));
    }

    #[test]
    fn changes_that_do_not_fit_the_index_are_refused() {
        let policy = FilePolicy::default();
        let index = FileIndex::new(vec![indexed("a", "a", EntryKind::File)]).unwrap();
        let last = SyncStats::default();
        let refused =
            |changes: Vec<TreeChange>| apply_changes(&index, changes, &policy, &last).unwrap_err();
        let err = refused(vec![change(
            "a",
            blob("other", EntryKind::File, false),
            None,
        )]);
        assert!(err.contains("`a`"), "{err}");
        let err = refused(vec![change("a", None, blob("a", EntryKind::File, true))]);
        assert!(err.contains("where the source had nothing"), "{err}");
        let err = refused(vec![change("b", None, blob("b", EntryKind::File, false))]);
        assert!(err.contains("no size"), "{err}");
        let err = refused(vec![change("s", Some(TreeItem::Submodule), None)]);
        assert!(err.contains("submodules"), "{err}");
        let twice = change("b", None, blob("b", EntryKind::File, true));
        let err = refused(vec![twice.clone(), twice]);
        assert!(err.contains("twice"), "{err}");
    }
}
