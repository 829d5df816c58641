//! The scripted history the suite syncs, the oracle it compares with, and a harness.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::{
    BlobId, CommitId, ContentHash, EntryKind, EntryQuery, Extractor, FilePolicy, HashEmbedder,
    IndexedFile, LineChunker, MemoryFile, MemorySource, NewEntry, RepoKey, RepoPath, RepoSource,
    RunStart, SkipReason, StageBatch, SyncOptions, SyncStore, Syncer,
};

use super::wrappers::{CountingEmbedder, FaultPlan, FaultySource, FaultyStore};

/// Maximum file size of the suite's policy.
pub const MAX_FILE_SIZE: u64 = 4096;
/// Chunk size of the suite's extractor.
pub const CHUNK_BYTES: usize = 200;
/// Dimensions of the suite's embedder.
pub const DIMS: usize = 16;

/// The suite's file policy: everything but `vendor/**`, files up to [`MAX_FILE_SIZE`].
pub fn policy() -> FilePolicy {
    FilePolicy::builder()
        .exclude("vendor/**")
        .max_file_size(MAX_FILE_SIZE)
        .build()
        .expect("static globs compile")
}

/// The suite's extractor.
pub fn extractor() -> LineChunker {
    LineChunker::new(CHUNK_BYTES)
}

/// The start of a run of `repo` on `main` at a fixed commit, for tests that drive a
/// store's runs directly.
pub fn run_start(repo: &RepoKey, lease: Duration) -> RunStart {
    RunStart {
        repo: repo.clone(),
        branch: "main".into(),
        commit: CommitId::from_bytes([0x22; 20]),
        fingerprint: "fp".into(),
        lease,
    }
}

/// A batch staging one single-line entry of `text` at `path` (ordinal 0, no embedding),
/// for tests that drive a store's run directly.
pub fn one_entry_batch(path: &str, text: &str) -> StageBatch {
    StageBatch {
        entries: vec![NewEntry {
            path: RepoPath::new(path).expect("a valid test path"),
            blob: BlobId::for_content(text.as_bytes()),
            ordinal: 0,
            content: text.into(),
            content_hash: ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: None,
        }],
        embeddings: vec![],
    }
}

/// A Rust file of about 700 bytes. Versions differ in one line of equal length, so only one
/// chunk's text changes between them.
pub fn lib_rs(version: u8) -> String {
    let mut s = String::from("//! The library.\n\n");
    for i in 0..12 {
        s.push_str(&format!(
            "pub fn f{i:02}(x: u32) -> u32 {{\n    x + {}\n}}\n\n",
            if i == 6 { version } else { 1 }
        ));
    }
    s
}

fn f(path: &str, data: &str) -> MemoryFile {
    MemoryFile::file(path, data.to_owned()).expect("fixture paths are valid")
}

fn k(path: &str, data: &[u8], kind: EntryKind) -> MemoryFile {
    MemoryFile::new(path, data.to_vec(), kind).expect("fixture paths are valid")
}

const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01";

/// The files of each step of the history. Step 0 has every kind of file; step 1 edits,
/// deletes, renames, flips an executable bit, retargets a symlink and adds a copy of old
/// content; step 2 is an empty commit (same tree); step 3 is on branch `dev`; step 4 deletes
/// almost everything.
pub fn step_files(step: usize) -> Vec<MemoryFile> {
    let readme = "# Conformance\n\nA repository used by the store conformance suite.\n";
    let big = |c: &str| c.repeat(MAX_FILE_SIZE as usize + 100);
    match step {
        0 => vec![
            f("README.md", readme),
            f("src/lib.rs", &lib_rs(1)),
            f("src/util.rs", "pub fn util() -> u8 { 7 }\n"),
            k(
                "scripts/run.sh",
                b"#!/bin/sh\necho run\n",
                EntryKind::Executable,
            ),
            k("link", b"README.md", EntryKind::Symlink),
            k("assets/logo.png", PNG, EntryKind::File),
            f("big.txt", &big("x")),
            f(
                "docs/with space/\u{fc}n\u{ef}c\u{f8}d\u{e9}.md",
                "# \u{dc}n\u{ef}c\u{f8}d\u{e9}\n",
            ),
            f("-leading-dash.txt", "dash\n"),
            f("vendor/dep.rs", "pub fn vendored() {}\n"),
            MemoryFile::submodule("third_party/lib").expect("valid"),
            f("empty.txt", ""),
            f("dup/a.txt", "same text\n"),
            f("dup/b.txt", "same text\n"),
        ],
        1 | 2 => vec![
            f("README.md", readme),
            f("src/lib.rs", &lib_rs(2)),
            f("src/new.rs", "pub fn new_fn() {}\n"),
            f("notes/old-lib.rs", &lib_rs(1)),
            k("scripts/run.sh", b"#!/bin/sh\necho run\n", EntryKind::File),
            k("link", b"src/lib.rs", EntryKind::Symlink),
            k("images/logo.png", PNG, EntryKind::File),
            f("big.txt", &big("y")),
            f(
                "docs/\u{fc}n\u{ef}c\u{f8}d\u{e9}.md",
                "# \u{dc}n\u{ef}c\u{f8}d\u{e9}\n",
            ),
            f("-leading-dash.txt", "dash\n"),
            f("vendor/dep.rs", "pub fn vendored() { 2 }\n"),
            MemoryFile::submodule("third_party/lib").expect("valid"),
            f("empty.txt", ""),
            f("dup/a.txt", "same text\n"),
        ],
        3 => {
            let mut files = step_files(1);
            files.retain(|m| m.path().as_bytes() != b"README.md");
            files.push(f("README.md", "# Conformance on dev\n"));
            files.push(f("feature.rs", "pub fn feature() -> bool { true }\n"));
            files
        }
        _ => vec![f("README.md", readme), f("src/lib.rs", &lib_rs(3))],
    }
}

/// The branch of each step.
pub fn step_branch(step: usize) -> &'static str {
    if step == 3 { "dev" } else { "main" }
}

/// The number of steps in the history.
pub const STEPS: usize = 5;

/// One memory entry, reduced to what defines the state (not which run wrote it).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EntryKey {
    /// Its path.
    pub path: RepoPath,
    /// Its ordinal.
    pub ordinal: u32,
    /// Its file version.
    pub blob: BlobId,
    /// Its text's hash.
    pub content_hash: ContentHash,
    /// Its embedding model.
    pub model: Option<String>,
}

/// The active state of a repository: its file index and its active entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// The active file index.
    pub files: Vec<IndexedFile>,
    /// The active entries, by path and ordinal.
    pub entries: Vec<EntryKey>,
}

impl Snapshot {
    /// Reads the active state from a store.
    pub async fn read(store: &dyn SyncStore, repo: &RepoKey) -> Snapshot {
        let files = store
            .file_index(repo)
            .await
            .expect("reading the file index")
            .into_files();
        let entries = store
            .entries(repo, &EntryQuery::active())
            .await
            .expect("reading active entries")
            .into_iter()
            .map(|e| EntryKey {
                path: e.path,
                ordinal: e.ordinal,
                blob: e.blob,
                content_hash: e.content_hash,
                model: e.model,
            })
            .collect();
        Snapshot { files, entries }
    }

    /// What the store must hold after syncing a commit of `source` with the suite's
    /// settings: the oracle.
    pub fn expected(source: &MemorySource, commit: &CommitId, model: Option<&str>) -> Snapshot {
        Self::expected_with(source, commit, model, &policy(), &extractor())
    }

    /// The oracle for other settings.
    pub fn expected_with(
        source: &MemorySource,
        commit: &CommitId,
        model: Option<&str>,
        policy: &FilePolicy,
        extractor: &dyn Extractor,
    ) -> Snapshot {
        let mut files = Vec::new();
        let mut entries = Vec::new();
        for m in source.files_of(commit).expect("commit exists") {
            let Some(kind) = m.kind() else { continue };
            if !policy.admits(m.path()) {
                continue;
            }
            let blob = BlobId::for_content(m.data());
            let size = m.data().len() as u64;
            let skip = if kind == EntryKind::Symlink {
                Some(SkipReason::Symlink)
            } else if size > policy.max_file_size() {
                Some(SkipReason::TooLarge)
            } else if FilePolicy::is_binary(m.data()) {
                Some(SkipReason::Binary)
            } else {
                None
            };
            if skip.is_none() {
                let text = String::from_utf8_lossy(m.data());
                for (i, chunk) in extractor.extract(m.path(), &text).into_iter().enumerate() {
                    entries.push(EntryKey {
                        path: m.path().clone(),
                        ordinal: i as u32,
                        blob,
                        content_hash: ContentHash::of(&chunk.embedding_text()),
                        model: model.map(str::to_owned),
                    });
                }
            }
            files.push(IndexedFile::new(
                crate::TreeEntry::new(m.path().clone(), blob, size, kind),
                skip,
            ));
        }
        files.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
        entries.sort();
        Snapshot { files, entries }
    }

    /// Distinct blobs whose content a first sync of this state must fetch: every indexed
    /// file that is neither a symlink nor too large (binaries are fetched once to be
    /// recognised).
    pub fn blobs_to_fetch(&self) -> usize {
        self.files
            .iter()
            .filter(|f| !matches!(f.skip, Some(SkipReason::Symlink | SkipReason::TooLarge)))
            .map(|f| f.entry.blob)
            .collect::<BTreeSet<_>>()
            .len()
    }
}

/// A store, the history's source and a syncer over them, with counting wrappers.
#[derive(Debug)]
pub struct Harness {
    /// The history.
    pub source: Arc<MemorySource>,
    /// The source as the syncer sees it, counting calls and blobs.
    pub counted_source: Arc<FaultySource<Arc<MemorySource>>>,
    /// The store under test.
    pub store: Arc<dyn SyncStore>,
    /// The store as the syncer sees it, counting calls and staged entries.
    pub counted_store: Arc<FaultyStore<Arc<dyn SyncStore>>>,
    /// The embedder, counting texts.
    pub embedder: Arc<CountingEmbedder<HashEmbedder>>,
    /// The syncer.
    pub syncer: Syncer,
}

impl Harness {
    /// A harness over a fresh store, in the default tenant.
    pub fn new(store: Arc<dyn SyncStore>) -> Self {
        Self::with_source(store, Arc::new(MemorySource::new("conformance")), None)
    }

    /// A harness over a given store and source, optionally in a tenant.
    pub fn with_source(
        store: Arc<dyn SyncStore>,
        source: Arc<MemorySource>,
        tenant: Option<&str>,
    ) -> Self {
        let counted_source = Arc::new(FaultySource::new(source.clone(), FaultPlan::count_only()));
        let counted_store = Arc::new(FaultyStore::new(store.clone(), FaultPlan::count_only()));
        let embedder = Arc::new(CountingEmbedder::new(HashEmbedder::new(DIMS)));
        let mut syncer = configure(
            Syncer::new(counted_source.clone(), counted_store.clone()).expect("valid identity"),
            embedder.clone(),
        );
        if let Some(t) = tenant {
            syncer = syncer.with_tenant(t).expect("valid tenant");
        }
        Self {
            source,
            counted_source,
            store,
            counted_store,
            embedder,
            syncer,
        }
    }

    /// A syncer with the suite's settings over other wrappers of the same repository.
    pub fn syncer_over(&self, source: Arc<dyn RepoSource>, store: Arc<dyn SyncStore>) -> Syncer {
        let mut s = configure(
            Syncer::new(source, store).expect("valid identity"),
            self.embedder.clone(),
        );
        if self.repo().tenant() != crate::DEFAULT_TENANT {
            s = s.with_tenant(self.repo().tenant()).expect("valid tenant");
        }
        s
    }

    /// The repository's key.
    pub fn repo(&self) -> &RepoKey {
        self.syncer.repo()
    }

    /// Commits step `step` of the history to its branch.
    pub fn commit(&self, step: usize) -> CommitId {
        self.source
            .commit_files(step_branch(step), step_files(step))
            .expect("fixture commits")
    }

    /// The store's active state.
    pub async fn snapshot(&self) -> Snapshot {
        Snapshot::read(self.store.as_ref(), self.repo()).await
    }

    /// The oracle's state for a commit.
    pub fn expected(&self, commit: &CommitId) -> Snapshot {
        Snapshot::expected(&self.source, commit, Some(&format!("hash-{DIMS}")))
    }

    /// Commits step `step` and syncs its branch, panicking on failure.
    pub async fn sync_step(&self, step: usize) -> crate::SyncRecord {
        let commit = self.commit(step);
        let record = self
            .syncer
            .sync(Some(step_branch(step)))
            .await
            .unwrap_or_else(|e| panic!("sync of step {step} failed: {e}"));
        assert_eq!(record.commit, commit, "step {step} synced the wrong commit");
        record
    }
}

/// The suite's options: small batches so a sync stages and embeds in several of them, and an event
/// buffer of one, so that a consumer that cancels after event `k` stops the pipeline
/// before event `k + 2` (which makes cancellation tests deterministic).
pub fn options() -> SyncOptions {
    SyncOptions::default()
        .batch_size(3)
        .embed_batch(2)
        .lease(Duration::from_secs(60))
        .event_buffer(1)
}

fn configure(syncer: Syncer, embedder: Arc<CountingEmbedder<HashEmbedder>>) -> Syncer {
    syncer
        .with_policy(policy())
        .with_extractor(Arc::new(extractor()))
        .with_embedder(embedder)
        .with_options(options())
}
