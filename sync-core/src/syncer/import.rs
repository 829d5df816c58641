//! Import: fetches the plan's blobs, turns them into entries, embeds texts never embedded
//! before and stages them in batches.

use std::collections::HashSet;
use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesOrdered;

use super::Phases;
use super::scan::{Plan, change_path, change_size};
use crate::{
    Blob, BlobId, ContentHash, Error, Extractor, FileChange, FilePolicy, NewEntry, Progress,
    RepoPath, SkipReason, StageBatch, SyncEvent, SyncRun, SyncStats,
};

/// Progress events are sent at least every this many blobs (and after every staged batch).
const PROGRESS_EVERY: u64 = 64;

/// Fetches the wanted blobs, extracts entries, embeds new texts and stages batches,
/// sending [`SyncEvent::Progress`] as it goes. Binary blobs mark their files
/// [`SkipReason::Binary`] in the plan.
pub(super) async fn run(phases: Phases<'_>, run: &SyncRun, plan: &mut Plan) -> Result<(), Error> {
    let s = phases.syncer;
    let mut progress = Progress {
        files_done: 0,
        files_total: plan.fetch.len() as u64,
        bytes_done: 0,
        bytes_total: plan.fetch.iter().map(|e| e.size).sum(),
        texts_embedded: 0,
        texts_to_embed: 0,
    };
    phases.emit.send(SyncEvent::Progress(progress)).await?;
    if plan.fetch.is_empty() {
        return Ok(());
    }
    let mut batch = Batch {
        phases,
        run,
        pending: Vec::new(),
        embedded: HashSet::new(),
        staging: None,
    };
    // Extraction is CPU work: it runs on the blocking pool while the source reads on, in
    // groups of files (one task per file would spend more on waking threads than on small
    // files), a few groups per core at a time; results are taken in fetch order.
    let parallel = 2 * std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut extracting = FuturesOrdered::new();
    let mut group = Group::default();
    // The list goes to the source: nothing after this reads it.
    let mut contents = s
        .source
        .contents(&run.commit, std::mem::take(&mut plan.fetch));
    let mut source_done = false;
    loop {
        while !source_done && extracting.len() < parallel {
            let Some(blob) = contents.next().await else {
                source_done = true;
                break;
            };
            let blob = blob?;
            let size = blob.data.len() as u64;
            plan.stats.blobs_fetched += 1;
            plan.stats.bytes_fetched += size;
            progress.bytes_done += size;
            match accept(phases, plan, blob)? {
                Some(job) => {
                    if group.add(job) {
                        extracting.push_back(std::mem::take(&mut group).spawn());
                    }
                }
                None => progress.files_done += 1,
            }
        }
        if source_done && !group.jobs.is_empty() {
            extracting.push_back(std::mem::take(&mut group).spawn());
        }
        let Some(done) = extracting.next().await else {
            break;
        };
        for entries in done? {
            batch.pending.extend(entries);
            progress.files_done += 1;
            if batch.pending.len() >= s.options.batch_size {
                batch.flush(&mut plan.stats, &mut progress).await?;
                phases.emit.send(SyncEvent::Progress(progress)).await?;
            } else if progress.files_done.is_multiple_of(PROGRESS_EVERY) {
                phases.emit.send(SyncEvent::Progress(progress)).await?;
            }
        }
    }
    drop(contents);
    if let Some((blob, at)) = plan.waiting.iter().next() {
        let path = change_path(&plan.changes[at[0]]);
        return Err(Error::corrupt(format!(
            "the source ended without the content of `{path}` (blob {blob}); {} blobs are missing",
            plan.waiting.len()
        )));
    }
    batch.flush(&mut plan.stats, &mut progress).await?;
    batch.staged().await?;
    phases.emit.send(SyncEvent::Progress(progress)).await?;
    Ok(())
}

/// Checks one fetched blob and returns the extraction of every path waiting for it;
/// `None` for a binary blob, whose files are marked [`SkipReason::Binary`] in the plan.
fn accept(phases: Phases<'_>, plan: &mut Plan, blob: Blob) -> Result<Option<Extraction>, Error> {
    let s = phases.syncer;
    let Some(waiting) = plan.waiting.remove(&blob.id) else {
        return Err(Error::corrupt(format!(
            "the source returned blob {} for `{}`, which was not asked for or came twice",
            blob.id, blob.path
        )));
    };
    let expected = change_size(&plan.changes[waiting[0]]);
    let actual = BlobId::for_content(&blob.data);
    if actual != blob.id || blob.data.len() as u64 != expected {
        return Err(Error::corrupt(format!(
            "the content returned for `{}` is {} bytes hashing to {actual}, but the tree says blob {} of {expected} bytes; nothing was stored",
            blob.path,
            blob.data.len(),
            blob.id
        )));
    }
    if FilePolicy::is_binary(&blob.data) {
        for at in waiting {
            if let FileChange::Upsert(f) = &mut plan.changes[at] {
                f.skip = Some(SkipReason::Binary);
            }
        }
        return Ok(None);
    }
    Ok(Some(Extraction {
        extractor: Arc::clone(&s.extractor),
        model: s.embedder.as_ref().map(|e| e.model().to_owned()),
        paths: waiting
            .iter()
            .map(|&at| change_path(&plan.changes[at]).clone())
            .collect(),
        blob,
    }))
}

/// The entries of one blob for every path that holds it, to be computed off the runtime.
struct Extraction {
    extractor: Arc<dyn Extractor>,
    model: Option<String>,
    paths: Vec<RepoPath>,
    blob: Blob,
}

/// Extractions run as one task on the blocking pool: up to [`Group::FILES`] files, or
/// fewer whose contents reach [`Group::BYTES`] (a large file goes alone).
#[derive(Default)]
struct Group {
    jobs: Vec<Extraction>,
    bytes: usize,
}

impl Group {
    const FILES: usize = 32;
    const BYTES: usize = 256 << 10;

    /// Adds `job`; whether the group is now full.
    fn add(&mut self, job: Extraction) -> bool {
        self.bytes += job.blob.data.len();
        self.jobs.push(job);
        self.jobs.len() >= Self::FILES || self.bytes >= Self::BYTES
    }

    /// Runs every extraction on the blocking pool; their entries, file by file, in order.
    fn spawn(self) -> impl Future<Output = Result<Vec<Vec<NewEntry>>, Error>> {
        let task = tokio::task::spawn_blocking(move || {
            self.jobs
                .into_iter()
                .map(Extraction::entries)
                .collect::<Vec<_>>()
        });
        async move {
            task.await.map_err(|e| {
                Error::backend(
                    "extractor",
                    "extracting a file's entries stopped unexpectedly (a bug in the extractor)",
                    e,
                )
            })
        }
    }
}

impl Extraction {
    fn entries(self) -> Vec<NewEntry> {
        // `from_utf8` checks valid text (nearly every blob) faster than the lossy decoder.
        let text = match std::str::from_utf8(&self.blob.data) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&self.blob.data),
        };
        let mut entries = Vec::new();
        for path in self.paths {
            let chunks = self.extractor.extract(&path, &text);
            entries.extend(chunks.into_iter().enumerate().map(|(ordinal, chunk)| {
                NewEntry::from_chunk(
                    path.clone(),
                    self.blob.id,
                    u32::try_from(ordinal).unwrap_or(u32::MAX),
                    chunk,
                    self.model.clone(),
                )
            }));
        }
        entries
    }
}

/// Entries waiting to be staged, the texts embedded by this run so far, and the batch the
/// store is staging.
struct Batch<'a> {
    phases: Phases<'a>,
    run: &'a SyncRun,
    pending: Vec<NewEntry>,
    embedded: HashSet<ContentHash>,
    staging: Option<Staging>,
}

/// A batch of entries the store stages while the import reads and extracts the next one.
/// Dropped unfinished (the import failed or was cancelled), it is left to finish alone: the
/// store stages only for a running run and discards what a run staged when it ends, so
/// whichever comes first, nothing it wrote outlives the run.
struct Staging(tokio::task::JoinHandle<Result<(), Error>>);

impl Staging {
    async fn finish(self) -> Result<(), Error> {
        self.0.await.map_err(|e| {
            Error::backend(
                "store",
                "staging a batch of entries stopped unexpectedly (a bug in the store)",
                e,
            )
        })?
    }
}

impl Batch<'_> {
    /// Waits until the batch in the store's hands, if any, is staged.
    async fn staged(&mut self) -> Result<(), Error> {
        match self.staging.take() {
            Some(staging) => staging.finish().await,
            None => Ok(()),
        }
    }

    /// Embeds the texts of `pending` never embedded before, and hands the batch to the
    /// store, which stages it while the import goes on (one batch at a time, in order).
    /// Sends progress after every call to the embedder (the slow part on a CPU).
    async fn flush(&mut self, stats: &mut SyncStats, progress: &mut Progress) -> Result<(), Error> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let s = self.phases.syncer;
        if let Some(embedder) = &s.embedder {
            let model = embedder.model();
            let mut fresh: Vec<(ContentHash, &str)> = Vec::new();
            for e in &self.pending {
                if self.embedded.insert(e.content_hash) {
                    fresh.push((e.content_hash, &e.content));
                }
            }
            if !fresh.is_empty() {
                let hashes: Vec<ContentHash> = fresh.iter().map(|(h, _)| *h).collect();
                let known = s.store.known_embeddings(&s.repo, model, &hashes).await?;
                stats.embeddings_reused += known.len() as u64;
                let todo: Vec<(ContentHash, &str)> = fresh
                    .into_iter()
                    .filter(|(h, _)| !known.contains_key(h))
                    .collect();
                if !todo.is_empty() {
                    progress.texts_to_embed += todo.len() as u64;
                    self.phases
                        .emit
                        .send(SyncEvent::Progress(*progress))
                        .await?;
                }
                for batch in todo.chunks(s.options.embed_batch) {
                    let (embeddings, tokens) =
                        crate::reembed::embed_checked(embedder.as_ref(), batch).await?;
                    stats.embedding_tokens += tokens;
                    // Stored at once: vectors are kept by (content, model) whatever becomes
                    // of the run, so a cancelled run loses at most the call in flight.
                    let batch_len = batch.len() as u64;
                    let vectors = StageBatch {
                        entries: Vec::new(),
                        embeddings,
                    };
                    s.store.stage(self.run, vectors).await?;
                    progress.texts_embedded += batch_len;
                    stats.embeddings_computed += batch_len;
                    self.phases
                        .emit
                        .send(SyncEvent::Progress(*progress))
                        .await?;
                }
            }
        }
        let batch = StageBatch {
            entries: std::mem::take(&mut self.pending),
            embeddings: Vec::new(),
        };
        self.staged().await?;
        let (store, run) = (Arc::clone(&s.store), self.run.clone());
        self.staging = Some(Staging(tokio::spawn(async move {
            store.stage(&run, batch).await
        })));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::scan;
    use super::super::test_support::Bench;
    use super::*;
    use crate::{ErrorKind, HashEmbedder, MemoryFile};

    #[tokio::test]
    async fn stages_entries_embeds_each_text_once_and_marks_binaries() {
        let mut bench = Bench::new().with(|s| s.with_embedder(Arc::new(HashEmbedder::new(8))));
        bench
            .source
            .commit_files(
                "main",
                vec![
                    MemoryFile::file("a.txt", "one\n").unwrap(),
                    MemoryFile::file("b.txt", "one\n").unwrap(),
                    MemoryFile::file("c.txt", "two\n").unwrap(),
                    MemoryFile::file("d.txt", "three\n").unwrap(),
                    MemoryFile::file("e.bin", b"\0\x01".to_vec()).unwrap(),
                ],
            )
            .unwrap();
        let run_ = bench.begin().await;
        let mut plan = scan::run(bench.phases(), &run_).await.unwrap();
        bench.events();
        run(bench.phases(), &run_, &mut plan).await.unwrap();
        assert_eq!(plan.stats.blobs_fetched, 4, "a.txt and b.txt share a blob");
        assert_eq!(plan.stats.embeddings_computed, 3, "one, two, three");
        assert!(plan.waiting.is_empty());
        let binary = plan
            .changes
            .iter()
            .filter_map(scan::new_file)
            .find(|f| f.entry.path.as_bytes() == b"e.bin")
            .unwrap();
        assert_eq!(binary.skip, Some(SkipReason::Binary));
        let progress: Vec<_> = bench
            .events()
            .into_iter()
            .filter_map(|e| match e {
                SyncEvent::Progress(p) => Some((p.files_done, p.texts_embedded, p.texts_to_embed)),
                _ => None,
            })
            .collect();
        assert_eq!(progress.first().map(|p| p.0), Some(0));
        assert_eq!(
            progress.last(),
            Some(&(4, 3, 3)),
            "4 files, 3 texts embedded of 3"
        );
        assert!(progress.is_sorted(), "{progress:?}");
        assert!(progress.iter().all(|p| p.1 <= p.2), "{progress:?}");
    }

    #[test]
    fn text_that_is_not_utf8_is_read_with_replacement_characters() {
        for (data, text) in [
            (&b"caf\xe9\nok\n"[..], "caf\u{fffd}\nok\n"),
            (&b"caf\xc3\xa9\n"[..], "caf\u{e9}\n"),
        ] {
            let path = RepoPath::new("a.txt").unwrap();
            let job = Extraction {
                extractor: Arc::new(crate::WholeFile),
                model: None,
                paths: vec![path.clone()],
                blob: Blob {
                    path,
                    id: BlobId::for_content(data),
                    data: data.to_vec().into(),
                },
            };
            let entries = job.entries();
            assert_eq!(entries.len(), 1);
            assert_eq!(entries[0].content, text);
        }
    }

    #[tokio::test]
    async fn a_source_that_leaves_a_blob_out_is_corrupt() {
        let bench = Bench::new();
        bench.source.commit("main", [("a.txt", "a\n")]).unwrap();
        let run_ = bench.begin().await;
        let mut plan = scan::run(bench.phases(), &run_).await.unwrap();
        // A blob the plan waits for but never asks the source for.
        let ghost = BlobId::for_content(b"never in the tree");
        plan.waiting.insert(ghost, vec![0]);
        let err = run(bench.phases(), &run_, &mut plan).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
        assert!(err.to_string().contains("a.txt"), "{err}");
    }
}
