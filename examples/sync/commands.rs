//! The commands.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sync_core::{
    Embedder, EntryQuery, Error, FilePolicy, HashEmbedder, LineChunker, RepoKey, SyncId,
    SyncOptions, SyncStore, Syncer,
};

use crate::report::{self, Reporter};
use crate::{Command, DbArg, RunArgs, SourceSpec, open};

/// Exit status of a run cancelled with Ctrl-C, as shells report a SIGINT.
const INTERRUPTED: u8 = 130;

pub(crate) async fn dispatch(command: Command) -> Result<ExitCode, Error> {
    match command {
        Command::Run(args) => run(args).await,
        Command::Ls { source, db } => ls(&SourceSpec::new(source), &db).await,
        Command::History {
            source,
            db,
            json,
            limit,
        } => history(&SourceSpec::new(source), &db, json, limit).await,
        Command::Restore { args, db } => {
            let (source, id) = split_optional_source(&args);
            restore(&source, &db, id.parse()?).await
        }
        Command::Branches { source, api } => {
            branches(&SourceSpec::new(source).with_api_url(api.api_url)).await
        }
        Command::Search { args, db, k } => {
            let (source, query) = split_optional_source(&args);
            search(&source, &db, query, k).await
        }
    }
}

/// `[SOURCE] VALUE`: one argument is the value, two are the source and the value.
fn split_optional_source(args: &[String]) -> (SourceSpec, &str) {
    match args {
        [source, value] => (SourceSpec::new(source.as_str()), value),
        [value] => (SourceSpec::new("."), value),
        _ => (SourceSpec::new("."), ""),
    }
}

async fn run(args: RunArgs) -> Result<ExitCode, Error> {
    let source = open::source(
        &SourceSpec::new(args.source.as_str()).with_api_url(args.api.api_url.clone()),
    )?;
    let embedder = args.embedder.as_deref().map(parse_embedder).transpose()?;
    let store = open::store(&args.db, true, embedder.as_ref().map(|e| e.dimensions())).await?;
    let mut policy = FilePolicy::builder().max_file_size(args.max_file_size);
    for glob in &args.include {
        policy = policy.include(glob);
    }
    for glob in &args.exclude {
        policy = policy.exclude(glob);
    }
    let mut syncer = Syncer::new(source, store)?
        .with_policy(policy.build()?)
        .with_extractor(Arc::new(LineChunker::new(args.chunk_size)))
        .with_options(SyncOptions::default().lease(Duration::from_secs(args.lease.max(1))));
    if let Some(tenant) = &args.db.tenant {
        syncer = syncer.with_tenant(tenant)?;
    }
    if let Some(embedder) = embedder {
        syncer = syncer.with_embedder(Arc::new(embedder));
    }

    let mut reporter = Reporter::new(args.json);
    let mut stream = syncer.run(args.branch.as_deref());
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let mut interrupted = false;
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else { break };
                if reporter.event(&event).is_err() {
                    // Nobody reads the output any more: stop, leaving the store as it was.
                    stream.cancel();
                }
            }
            _ = &mut ctrl_c, if !interrupted => {
                interrupted = true;
                reporter.finish();
                eprintln!("interrupted: cancelling the run; the store stays as it was");
                stream.cancel();
            }
        }
    }
    reporter.finish();
    match stream.finish().await {
        Ok(record) => {
            if reporter.wants_summary() {
                println!("{}", report::summary(&record));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(Error::Cancelled) if interrupted => Ok(ExitCode::from(INTERRUPTED)),
        Err(e) => Err(e),
    }
}

/// `hash` or `hash:DIMS`.
fn parse_embedder(spec: &str) -> Result<HashEmbedder, Error> {
    let dims = match spec.split_once(':') {
        None if spec == "hash" => 256,
        Some(("hash", dims)) => dims
            .parse()
            .ok()
            .filter(|d| (1..=8192).contains(d))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "`{dims}` is not a number of dimensions (1 to 8192)"
                ))
            })?,
        _ => {
            return Err(Error::invalid_input(format!(
                "unknown embedder `{spec}`: use `hash` or `hash:DIMS`"
            )));
        }
    };
    Ok(HashEmbedder::new(dims))
}

/// The store and the repository's key in it, for the commands that read.
async fn open_existing(
    source: &SourceSpec,
    db: &DbArg,
) -> Result<(Arc<dyn SyncStore>, RepoKey), Error> {
    let source = open::source(source)?;
    let store = open::store(db, false, None).await?;
    let key = open::repo_key(source.as_ref(), db)?;
    Ok((store, key))
}

async fn ls(source: &SourceSpec, db: &DbArg) -> Result<ExitCode, Error> {
    let (store, key) = open_existing(source, db).await?;
    let index = store.file_index(&key).await?;
    if index.is_empty() && store.last_completed(&key).await?.is_none() {
        eprintln!(
            "`{key}` has not been synced into `{}` yet: run `sync run` first",
            db.label()
        );
    }
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written: std::io::Result<()> = (|| {
        for f in index.files() {
            out.write_all(f.entry.path.as_bytes())?;
            writeln!(
                out,
                "\t{}\t{}\t{}",
                f.entry.blob, f.entry.size, f.entry.kind
            )?;
        }
        out.flush()
    })();
    ignore_closed_pipe(written)?;
    Ok(ExitCode::SUCCESS)
}

async fn history(
    source: &SourceSpec,
    db: &DbArg,
    json: bool,
    limit: usize,
) -> Result<ExitCode, Error> {
    let (store, key) = open_existing(source, db).await?;
    let runs = store.history(&key, limit).await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written: std::io::Result<()> = (|| {
        if json {
            for r in &runs {
                serde_json::to_writer(&mut out, r)?;
                out.write_all(b"\n")?;
            }
        } else {
            writeln!(
                out,
                "{:>6}  {:<10}  {:<16}  {:<12}  {:<20}  changes (+added ~modified -deleted >renamed)",
                "ID", "STATUS", "BRANCH", "COMMIT", "STARTED"
            )?;
            for r in &runs {
                let s = &r.stats;
                let commit = r.commit.to_string();
                let mut line = format!(
                    "{:>6}  {:<10}  {:<16}  {:<12}  {:<20}  +{} ~{} -{} >{}, {} files, {} entries written",
                    r.id.to_string(),
                    r.status.as_str(),
                    r.branch,
                    &commit[..12],
                    r.started_at.format("%Y-%m-%d %H:%M:%S"),
                    s.added,
                    s.modified,
                    s.deleted,
                    s.renamed,
                    s.files,
                    s.entries_written
                );
                if let Some(from) = r.restored_from {
                    line.push_str(&format!(", restored from run {from}"));
                }
                if let Some(error) = &r.error {
                    line.push_str(&format!(", error: {error}"));
                }
                writeln!(out, "{line}")?;
            }
        }
        out.flush()
    })();
    ignore_closed_pipe(written)?;
    Ok(ExitCode::SUCCESS)
}

async fn restore(source: &SourceSpec, db: &DbArg, to: SyncId) -> Result<ExitCode, Error> {
    let (store, key) = open_existing(source, db).await?;
    let record = store.restore(&key, to).await?;
    println!("{}", report::summary(&record));
    Ok(ExitCode::SUCCESS)
}

async fn branches(source: &SourceSpec) -> Result<ExitCode, Error> {
    let source = open::source(source)?;
    let default = source.default_branch().await.ok();
    let branches = source.branches().await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written: std::io::Result<()> = (|| {
        for b in &branches {
            let mark = if default.as_deref() == Some(b.name.as_str()) {
                '*'
            } else {
                ' '
            };
            writeln!(out, "{mark} {}\t{}", b.name, b.commit)?;
        }
        out.flush()
    })();
    ignore_closed_pipe(written)?;
    Ok(ExitCode::SUCCESS)
}

async fn search(source: &SourceSpec, db: &DbArg, query: &str, k: usize) -> Result<ExitCode, Error> {
    let (store, key) = open_existing(source, db).await?;
    let sample = store
        .entries(
            &key,
            &EntryQuery {
                limit: Some(1),
                ..EntryQuery::default()
            },
        )
        .await?;
    let Some(first) = sample.first() else {
        return Err(Error::invalid_input(format!(
            "`{key}` has no entries in `{}`: run `sync run --embedder hash` first",
            db.label()
        )));
    };
    let model = first.model.clone().ok_or_else(|| {
        Error::invalid_input(format!(
            "the entries of `{key}` have no embeddings: configure an embedder and sync again, e.g. `sync run --embedder hash`"
        ))
    })?;
    let embedder = model
        .strip_prefix("hash-")
        .and_then(|dims| parse_embedder(&format!("hash:{dims}")).ok())
        .ok_or_else(|| {
            Error::unsupported(format!(
                "the entries of `{key}` were embedded with `{model}`, which this command line cannot compute; search them through the library with that embedder"
            ))
        })?;
    // A Postgres store with the dimension fixed searches through its HNSW index.
    let store = if db.is_postgres() {
        open::store(db, false, Some(embedder.dimensions())).await?
    } else {
        store
    };
    let hits = store
        .search_vector(&key, &model, &embedder.embed_one(query), k)
        .await?;
    let mut out = BufWriter::new(std::io::stdout().lock());
    let written: std::io::Result<()> = (|| {
        for hit in &hits {
            let e = &hit.entry;
            let first_line = e
                .content
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            writeln!(
                out,
                "{:.3}\t{}:{}-{}\t{}",
                hit.score,
                e.path,
                e.start_line,
                e.end_line,
                first_line.trim()
            )?;
        }
        out.flush()
    })();
    ignore_closed_pipe(written)?;
    Ok(ExitCode::SUCCESS)
}

/// Output cut short by a closed pipe (`sync ls | head`) is not an error.
fn ignore_closed_pipe(result: std::io::Result<()>) -> Result<(), Error> {
    match result {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Backend {
            backend: "stdout",
            message: "could not write the output".to_owned(),
            retryable: false,
            source: Some(Box::new(e)),
        }),
        _ => Ok(()),
    }
}
