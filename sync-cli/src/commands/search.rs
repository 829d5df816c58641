//! `projsync search QUERY`: the active entries closest to a query.

use std::io::Write;

use serde::Serialize;
use sync_core::{EntryQuery, Error};

use crate::cli::SearchArgs;
use crate::embedder::EmbedderSpec;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::quote::quote_path;
use crate::report::{self, JsonPath};

/// One hit of `search --json`.
#[derive(Serialize)]
struct JsonHit<'a> {
    score: f32,
    #[serde(flatten)]
    path: JsonPath<'a>,
    ordinal: u32,
    start_line: u32,
    end_line: u32,
    content: &'a str,
}

pub(super) async fn exec(target: &Target, args: &SearchArgs) -> Result<Exit, Error> {
    let (store, key) = open::existing(target).await?;
    let db = &target.db;
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
        return Err(Error::not_found(format!(
            "`{key}` has no entries in `{}`: run `projsync run` first",
            db.label()
        )));
    };
    let model = first.model.clone().ok_or_else(|| {
        Error::invalid_input(format!(
            "the entries of `{key}` have no embeddings (synced with `--embedder none`): sync again with an embedder, `projsync run` (MiniLM) or e.g. `projsync run --embedder hash`"
        ))
    })?;
    // The query must be embedded with the model the entries were embedded with.
    let spec = match args.embed.embedder.as_deref() {
        Some(spec) => EmbedderSpec::parse(spec, false)?,
        None => EmbedderSpec::for_model(&model).ok_or_else(|| {
            Error::invalid_input(format!(
                "the entries of `{key}` were embedded with `{model}`: pass the embedder that computes it, e.g. `--embedder openai:{model}`"
            ))
        })?,
    };
    let embedder = spec
        .open(&args.embed)
        .await?
        .ok_or_else(|| Error::invalid_input("`projsync search` needs an embedder"))?;
    if embedder.model() != model {
        return Err(Error::invalid_input(format!(
            "the entries of `{key}` were embedded with `{model}`, but `--embedder` computes `{}`: leave `--embedder` out, or sync again with it",
            embedder.model()
        )));
    }
    // A Postgres store with the dimension fixed searches through its HNSW index.
    let store = if db.is_postgres() {
        open::store(db, false, Some(embedder.dimensions())).await?
    } else {
        store
    };
    let query = embedder
        .embed(&[args.query.as_str()])
        .await?
        .pop()
        .ok_or_else(|| {
            Error::invalid_input(format!("`{model}` returned no vector for the query"))
        })?;
    let hits = store.search(&key, &query, args.k).await?;
    report::write_stdout(|out| {
        for hit in &hits {
            let e = &hit.entry;
            if args.json.json {
                report::json_line(
                    out,
                    &JsonHit {
                        score: hit.score,
                        path: JsonPath::new(&e.path),
                        ordinal: e.ordinal,
                        start_line: e.start_line,
                        end_line: e.end_line,
                        content: &e.content,
                    },
                )?;
                continue;
            }
            let first_line = e
                .content
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            writeln!(
                out,
                "{:.3}\t{}:{}-{}\t{}",
                hit.score,
                quote_path(e.path.as_bytes()),
                e.start_line,
                e.end_line,
                first_line.trim()
            )?;
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}
