//! `projsync search QUERY [--at RUN]`: the active entries (or those right after a run)
//! closest to a query.

use std::io::Write;

use std::sync::Arc;

use sync_core::{
    Embedding, EntryQuery, Error, HitJson, RepoKey, SearchHit, SearchMode, SearchQuery, SyncStore,
    SyncStoreExt,
};

use crate::cli::SearchArgs;
use crate::embedder::EmbedderSpec;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::quote::quote_path;
use crate::report;

pub(super) async fn exec(target: &Target, args: &SearchArgs) -> Result<Exit, Error> {
    let mode: SearchMode = args.mode.parse()?;
    let at = args.at.run()?;
    let (store, key) = open::existing(target).await?;
    let (store, query) = match mode {
        SearchMode::Lexical => (store, SearchQuery::lexical(args.query.as_str())),
        mode => {
            let (store, (model, vector)) = query_vector(target, store, &key, args).await?;
            let query = if mode == SearchMode::Vector {
                SearchQuery::vector(model, vector)
            } else {
                SearchQuery::hybrid(args.query.as_str(), model, vector)
            };
            (store, query)
        }
    };
    let hits = store
        .search(&key, &query.with_k(args.k).with_at(at))
        .await?;
    print(&hits, args)
}

/// The query's vector, by the model the entries were embedded with, and the store to
/// search it in.
async fn query_vector(
    target: &Target,
    store: Arc<dyn SyncStore>,
    key: &RepoKey,
    args: &SearchArgs,
) -> Result<(Arc<dyn SyncStore>, (String, Embedding)), Error> {
    let db = &target.db;
    let sample = store
        .entries(
            key,
            &EntryQuery {
                limit: Some(1),
                at: args.at.run()?,
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
    // Without `--embedder`, the query is embedded with the model the entries were synced
    // with; with it, with that model (whose vectors `projsync reembed` may have computed).
    let embedder = match args.embed.embedder.as_deref() {
        Some(spec) => EmbedderSpec::parse(spec, false)?.open(&args.embed).await?,
        None => {
            let model = first.model.clone().ok_or_else(|| {
                Error::invalid_input(format!(
                    "the entries of `{key}` have no embeddings (synced with `--embedder none`): search them with `--mode lexical`, compute them with `projsync reembed`, or sync again with an embedder, `projsync run` (MiniLM) or e.g. `projsync run --embedder hash`"
                ))
            })?;
            EmbedderSpec::for_model(&model)
                .ok_or_else(|| {
                    let spec = match model.rsplit_once('@') {
                        Some((name, dims)) => {
                            format!("--embedder openai:{name} --embed-dimensions {dims}")
                        }
                        None => format!("--embedder openai:{model}"),
                    };
                    Error::invalid_input(format!(
                        "the entries of `{key}` were embedded with `{model}`: pass the embedder that computes it, e.g. `{spec}`"
                    ))
                })?
                .open(&args.embed)
                .await?
        }
    }
    .ok_or_else(|| Error::invalid_input("`projsync search` needs an embedder"))?;
    let model = embedder.model().to_owned();
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
    Ok((store, (model, query)))
}

fn print(hits: &[SearchHit], args: &SearchArgs) -> Result<Exit, Error> {
    report::write_stdout(|out| {
        for hit in hits {
            let e = &hit.entry;
            if args.json.json {
                report::json_line(out, &HitJson::new(hit))?;
                continue;
            }
            // The symbol path says what the hit is; without one, its first line.
            let label = e.meta.symbol.as_deref().unwrap_or_else(|| {
                e.content
                    .lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim()
            });
            writeln!(
                out,
                "{:.3}\t{}:{}-{}\t{}",
                hit.score,
                quote_path(e.path.as_bytes()),
                e.start_line,
                e.end_line,
                label
            )?;
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}
