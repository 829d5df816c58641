//! What the server does for a caller, whatever the protocol asks: search, read a file,
//! list files, say where the syncs are, start one. The JSON API's handlers and the MCP
//! tools are thin calls into these functions, so both answer the same way.

use serde::Serialize;
use sync_core::{
    EntryQuery, Error, FilePolicy, IndexedFile, RepoPath, SearchHit, SearchMode, SearchQuery,
    SyncId, SyncRecord, SyncStoreExt,
};

use crate::queue::QueuedSync;
use crate::runs::Runs;
use crate::state::{AppState, Project};

/// Searches the active entries of `project` for `text` (or, with `at`, the entries live
/// right after that completed run): `k` hits, ranked as `mode` says (default: hybrid when
/// the server has an embedder for queries, else lexical).
pub(crate) async fn search(
    state: &AppState,
    project: &Project,
    text: &str,
    k: usize,
    mode: Option<SearchMode>,
    at: Option<SyncId>,
) -> Result<Vec<SearchHit>, Error> {
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::invalid_input(
            "the query is empty: pass the text to search for",
        ));
    }
    let mode = match mode {
        Some(mode) => mode,
        None if state.embedder().is_some() => SearchMode::Hybrid,
        None => SearchMode::Lexical,
    };
    let search = match mode {
        SearchMode::Lexical => SearchQuery::lexical(text),
        mode => {
            let embedder = state.embedder().ok_or_else(|| {
                Error::invalid_input(
                    "this server has no embedder for queries: search with mode `lexical`",
                )
            })?;
            let vector =
                embedder.embed(&[text]).await?.pop().ok_or_else(|| {
                    Error::corrupt("the embedder returned no vector for the query")
                })?;
            if mode == SearchMode::Vector {
                SearchQuery::vector(embedder.model(), vector)
            } else {
                SearchQuery::hybrid(text, embedder.model(), vector)
            }
        }
    };
    project
        .store()
        .search(project.repo(), &search.with_k(k).with_at(at))
        .await
}

/// A file's text as the memory holds it (or some of its lines).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileText {
    /// The path.
    pub(crate) path: String,
    /// The version's blob.
    pub(crate) blob: String,
    /// The first line given, from 1.
    pub(crate) start_line: usize,
    /// The last line given, inclusive (`start_line - 1` for an empty file).
    pub(crate) end_line: usize,
    /// The lines of the whole file.
    pub(crate) total_lines: usize,
    /// The text of lines `start_line..=end_line`, line endings included.
    pub(crate) text: String,
}

/// The text of `path` in the active memory of `project` (or, with `at`, in the memory as
/// it was right after that completed run), rebuilt from its entries (their contents in
/// chunk order: the extractors' chunks are whole lines, in order, that concatenate to the
/// file's text), optionally only lines `first..=last` (from 1; a range past the end stops
/// at the last line).
pub(crate) async fn read_file(
    project: &Project,
    path: RepoPath,
    first: Option<usize>,
    last: Option<usize>,
    at: Option<SyncId>,
) -> Result<FileText, Error> {
    let store = project.store();
    let query = EntryQuery {
        at,
        ..EntryQuery::path(path.clone())
    };
    let mut entries = store.entries(project.repo(), &query).await?;
    entries.sort_by_key(|e| e.ordinal);
    let blob = match entries.first() {
        Some(e) => e.blob.to_string(),
        // No entries: a missing file, one indexed without text, or an empty one.
        None => {
            let index = store.file_index_as_of(project.repo(), at).await?;
            let file = index.get(&path).ok_or_else(|| missing(project, &path))?;
            if let Some(reason) = file.skip {
                return Err(Error::unsupported(format!(
                    "`{path}` is in the index of `{}` without text ({reason}): its content was never read",
                    project.name()
                )));
            }
            file.entry.blob.to_string()
        }
    };
    let text: String = entries.iter().map(|e| e.content.as_str()).collect();
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let total = lines.len();
    let start = first.unwrap_or(1);
    let end = last.unwrap_or(total).min(total);
    if start == 0 || last == Some(0) {
        return Err(Error::invalid_input(
            "lines are numbered from 1: pass start_line and end_line of 1 or more",
        ));
    }
    if last.is_some_and(|l| l < start) {
        return Err(Error::invalid_input(format!(
            "end_line {} is before start_line {start}: pass a range with start_line ≤ end_line",
            last.unwrap_or_default()
        )));
    }
    if start > total.max(1) {
        return Err(Error::invalid_input(format!(
            "`{path}` has {total} lines: start_line {start} is past its end"
        )));
    }
    let text = if start > end {
        String::new()
    } else {
        lines[start - 1..end].concat()
    };
    Ok(FileText {
        path: path.to_string_lossy().into_owned(),
        blob,
        start_line: start,
        end_line: end,
        total_lines: total,
        text,
    })
}

fn missing(project: &Project, path: &RepoPath) -> Error {
    Error::not_found(format!(
        "there is no file `{path}` in the memory of `{}`: list_files lists its files",
        project.name()
    ))
}

/// The active file index of `project` (or, with `at`, the index right after that
/// completed run), only paths matching `glob` when given (the glob syntax of the include
/// and exclude rules).
pub(crate) async fn list_files(
    project: &Project,
    glob: Option<&str>,
    at: Option<SyncId>,
) -> Result<Vec<IndexedFile>, Error> {
    let policy = match glob {
        Some(glob) => Some(
            FilePolicy::builder()
                .include(glob)
                .build()
                .map_err(|e| e.context("the glob to list files with"))?,
        ),
        None => None,
    };
    let index = project.store().file_index_as_of(project.repo(), at).await?;
    Ok(index
        .into_files()
        .into_iter()
        .filter(|f| policy.as_ref().is_none_or(|p| p.admits(&f.entry.path)))
        .collect())
}

/// Where the syncs of a project are.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Status {
    /// The project's name.
    pub(crate) project: String,
    /// Its repository.
    pub(crate) repo: String,
    /// The run this server is running for it, if any.
    pub(crate) running: Option<Running>,
    /// The newest run of any status (a run in progress elsewhere shows as `running`).
    pub(crate) latest: Option<SyncRecord>,
    /// The newest completed run: the one whose state the memory holds.
    pub(crate) last_completed: Option<SyncRecord>,
}

/// A run in progress in this server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Running {
    /// Its id, once the store has opened it.
    pub(crate) id: Option<SyncId>,
    /// Its latest event (`phase`, `progress`, …), as its event stream sends it.
    pub(crate) last_event: Option<serde_json::Value>,
}

/// Where the syncs of `project` are: the run in progress here, the newest run and the
/// newest completed one.
pub(crate) async fn status(state: &AppState, project: &Project) -> Result<Status, Error> {
    let running = state.runs().active(project.name()).map(|log| {
        let (events, _) = log.read(log.len().max(1));
        Running {
            id: log.sync_id(),
            last_event: events
                .last()
                .and_then(|e| serde_json::from_str(&e.data).ok()),
        }
    });
    let store = project.store();
    Ok(Status {
        project: project.name().to_owned(),
        repo: project.repo().source().to_owned(),
        running,
        latest: store.latest_run(project.repo()).await?,
        last_completed: store.last_completed(project.repo()).await?,
    })
}

/// The last `limit` runs of `project`, newest first.
pub(crate) async fn history(project: &Project, limit: usize) -> Result<Vec<SyncRecord>, Error> {
    project.store().history(project.repo(), limit).await
}

/// How a sync request was taken.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Started {
    /// The run started in this server and the store has opened it.
    Running(SyncId),
    /// The request went to the server's [`SyncQueue`](crate::SyncQueue).
    Queued(QueuedSync),
}

/// Starts a sync of `branch` of `project` (default: the project's default branch, else
/// the source's): in this server, answering once the store has opened the run, or in
/// the server's queue. Fails with `Conflict` while a run of the project started here is
/// in progress.
pub(crate) async fn start(
    state: &AppState,
    project: &Project,
    branch: Option<&str>,
) -> Result<Started, Error> {
    let branch = branch.or_else(|| project.default_branch());
    if let Some(queue) = state.queue() {
        let queued = queue
            .enqueue(project.tenant(), project.name(), branch)
            .await?;
        return Ok(Started::Queued(queued));
    }
    let opened = Runs::start(state, project, branch)?;
    match opened.await {
        Ok(Ok((id, _log))) => Ok(Started::Running(id)),
        Ok(Err(report)) => Err(reported(report)),
        Err(_) => Err(Error::Cancelled),
    }
}

/// The error a run's `Failed` event reported, as an error of the same kind.
fn reported(report: sync_core::ErrorReport) -> Error {
    use sync_core::ErrorKind as K;
    let m = report.message;
    match report.kind {
        K::NotFound => Error::not_found(m),
        K::Conflict => Error::conflict(m),
        K::Unauthorized => Error::unauthorized(m),
        K::RateLimited => Error::rate_limited(None, m),
        K::InvalidInput => Error::invalid_input(m),
        K::Corrupt => Error::corrupt(m),
        K::Unsupported => Error::unsupported(m),
        K::Cancelled => Error::Cancelled,
        _ => Error::Backend {
            backend: "sync",
            message: m,
            retryable: report.retryable,
            source: None,
        },
    }
}
