//! `projsync search QUERY`: the active entries closest to a query.

use std::io::Write;

use serde::Serialize;
use sync_core::{Embedder, EntryQuery, Error, SearchQuery, SyncStoreExt};

use crate::cli::SearchArgs;
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
            "`{key}` has no entries in `{}`: run `projsync run --embedder hash` first",
            db.label()
        )));
    };
    let model = first.model.clone().ok_or_else(|| {
        Error::invalid_input(format!(
            "the entries of `{key}` have no embeddings: configure an embedder and sync again, e.g. `projsync run --embedder hash`"
        ))
    })?;
    let embedder = model
        .strip_prefix("hash-")
        .and_then(|dims| super::parse_embedder(&format!("hash:{dims}")).ok())
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
    let query = SearchQuery::vector(model, embedder.embed_one(&args.query)).with_k(args.k);
    let hits = store.search(&key, &query).await?;
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
