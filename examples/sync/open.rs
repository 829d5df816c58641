//! Opening the source and the store named on the command line.

use std::sync::Arc;

use sync_core::{Error, RepoKey, RepoSource, SyncStore};

use crate::{DbArg, SourceSpec};

/// Opens the repository named by `spec`: `github:OWNER/NAME` on GitHub (token from
/// `GITHUB_TOKEN`), anything else a local git repository.
pub(crate) fn source(spec: &SourceSpec) -> Result<Arc<dyn RepoSource>, Error> {
    if let Some(slug) = spec.github_slug() {
        let mut builder = sync_github::GitHubSource::from_slug(slug)?;
        if let Some(url) = &spec.api_url {
            builder = builder.api_url(url.as_str());
        }
        return Ok(Arc::new(builder.build()?));
    }
    let path = spec.path();
    let source = sync_git::GitSource::open(&path)
        .map_err(|e| e.context(format!("opening the repository at `{}`", path.display())))?;
    Ok(Arc::new(source))
}

/// Opens the store named by `--db`: `postgres://…` on PostgreSQL, anything else a SQLite
/// file. Commands that only read (`create` false) refuse to create an empty SQLite
/// database where none exists. `dimensions` fixes the embedding dimension of a Postgres
/// store (which then keeps an HNSW index for it).
pub(crate) async fn store(
    db: &DbArg,
    create: bool,
    dimensions: Option<usize>,
) -> Result<Arc<dyn SyncStore>, Error> {
    let context = |e: Error| e.context(format!("opening the store `{}`", db.label()));
    if db.is_postgres() {
        let mut builder = sync_postgres::PgStore::connect(&db.db);
        if let Some(d) = dimensions {
            builder = builder.dimensions(d);
        }
        return Ok(Arc::new(builder.open().await.map_err(context)?));
    }
    let config = sync_sqlite::SqliteConfig::parse(&db.db)?;
    if !create && !config.path().exists() {
        return Err(Error::not_found(format!(
            "there is no store at `{}`: run `sync run` first, or pass --db",
            config.path().display()
        )));
    }
    Ok(Arc::new(config.open().await.map_err(context)?))
}

/// The key the repository is kept under.
pub(crate) fn repo_key(source: &dyn RepoSource, db: &DbArg) -> Result<RepoKey, Error> {
    let key = RepoKey::new(source.identity())?;
    match &db.tenant {
        Some(t) => key.with_tenant(t.as_str()),
        None => Ok(key),
    }
}
