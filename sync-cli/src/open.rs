//! Opening the source and the store named on the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sync_core::{Error, RepoKey, RepoSource, ResponseCache, SyncStore};

use crate::cli::GlobalArgs;
use crate::dburl::{DbKind, DbSpec};

/// What every command works on: the repository, the store and the tenant, as given.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    /// `--source`.
    pub(crate) source: SourceSpec,
    /// `--db`.
    pub(crate) db: DbSpec,
    /// `--tenant`.
    pub(crate) tenant: Option<String>,
}

impl Target {
    pub(crate) fn new(global: &GlobalArgs) -> Self {
        Self {
            source: SourceSpec::new(&global.source),
            db: DbSpec::parse(&global.db),
            tenant: global.tenant.clone(),
        }
    }
}

/// Where a repository given with `--source` is.
#[derive(Debug, Clone)]
pub(crate) struct SourceSpec {
    spec: String,
}

impl SourceSpec {
    pub(crate) fn new(spec: &str) -> Self {
        Self {
            spec: spec.to_owned(),
        }
    }

    /// The spec as given.
    pub(crate) fn spec(&self) -> &str {
        &self.spec
    }

    /// `OWNER/NAME` of a `github:OWNER/NAME` source.
    fn github_slug(&self) -> Option<&str> {
        self.spec.strip_prefix("github:")
    }

    /// The path of a local repository (`git:PATH` or a plain path).
    fn path(&self) -> PathBuf {
        PathBuf::from(self.spec.strip_prefix("git:").unwrap_or(&self.spec))
    }
}

/// Opens the repository: `github:OWNER/NAME` on GitHub (token from `GITHUB_TOKEN`, API at
/// `api_url` when given), anything else a local git repository.
pub(crate) fn source(
    spec: &SourceSpec,
    api_url: Option<&str>,
) -> Result<Arc<dyn RepoSource>, Error> {
    if let Some(slug) = spec.github_slug() {
        let mut builder = sync_github::GitHubSource::from_slug(slug)?;
        if let Some(url) = api_url {
            builder = builder.api_url(url);
        }
        return Ok(Arc::new(builder.build()?));
    }
    let path = spec.path();
    let source = sync_git::GitSource::open(&path)
        .map_err(|e| e.context(format!("opening the repository at `{}`", path.display())))?;
    Ok(Arc::new(source))
}

/// Opens a project's repository for the poller: as [`source`], with a GitHub source's
/// ETags kept in `cache` and a rate limit failing at once (the poller backs off until the
/// reset rather than holding up the other projects).
pub(crate) fn poll_source(
    spec: &SourceSpec,
    api_url: Option<&str>,
    cache: Arc<dyn ResponseCache>,
) -> Result<Arc<dyn RepoSource>, Error> {
    let Some(slug) = spec.github_slug() else {
        return source(spec, api_url);
    };
    let mut builder = sync_github::GitHubSource::from_slug(slug)?
        .response_cache(cache)
        .max_rate_limit_wait(Duration::ZERO);
    if let Some(url) = api_url {
        builder = builder.api_url(url);
    }
    Ok(Arc::new(builder.build()?))
}

/// Opens the store named by `--db`: `postgres://…` on PostgreSQL, a path or `sqlite://…`
/// a SQLite file. Commands that only read (`create` false) refuse to create an empty
/// SQLite database where none exists. `dimensions` fixes the embedding dimension of a
/// Postgres store (which then keeps an HNSW index for it).
pub(crate) async fn store(
    db: &DbSpec,
    create: bool,
    dimensions: Option<usize>,
) -> Result<Arc<dyn SyncStore>, Error> {
    let context = |e: Error| e.context(format!("opening the store `{}`", db.label()));
    match db.kind() {
        DbKind::Postgres => {
            let mut builder = sync_postgres::PgStore::connect(db.raw());
            if let Some(d) = dimensions {
                builder = builder.dimensions(d);
            }
            Ok(Arc::new(builder.open().await.map_err(context)?))
        }
        DbKind::Other(scheme) => Err(Error::unsupported(format!(
            "`{}`: `{scheme}://` stores are not supported; use a SQLite file (a path or sqlite://PATH) or PostgreSQL (postgres://…)",
            db.label()
        ))),
        DbKind::Sqlite => {
            let config = sync_sqlite::SqliteConfig::parse(db.raw())?;
            if !create && !config.path().exists() {
                return Err(Error::not_found(format!(
                    "there is no store at `{}`: run `projsync run` first, or pass --db",
                    config.path().display()
                )));
            }
            Ok(Arc::new(config.open().await.map_err(context)?))
        }
    }
}

/// The key the repository is kept under.
pub(crate) fn repo_key(source: &dyn RepoSource, tenant: Option<&str>) -> Result<RepoKey, Error> {
    let key = RepoKey::new(source.identity())?;
    match tenant {
        Some(t) => key.with_tenant(t),
        None => Ok(key),
    }
}

/// The store and the repository's key in it, for the commands that read.
pub(crate) async fn existing(target: &Target) -> Result<(Arc<dyn SyncStore>, RepoKey), Error> {
    let source = source(&target.source, None)?;
    let key = repo_key(source.as_ref(), target.tenant.as_deref())?;
    let store = store(&target.db, false, None).await?;
    Ok((store, key))
}

/// Opens the PostgreSQL store of `--db` for the commands that keep projects and jobs
/// there; any other store is refused, saying what to pass. `dimensions` as for [`store`].
pub(crate) async fn postgres(
    db: &DbSpec,
    command: &str,
    dimensions: Option<usize>,
) -> Result<sync_postgres::PgStore, Error> {
    if !db.is_postgres() {
        return Err(Error::unsupported(format!(
            "`projsync {command}` keeps projects and sync jobs in PostgreSQL, and `{}` is not a PostgreSQL store: pass --db postgres://USER:PASSWORD@HOST/DB (or set PROJSYNC_DB)",
            db.label()
        )));
    }
    let mut builder = sync_postgres::PgStore::connect(db.raw());
    if let Some(d) = dimensions {
        builder = builder.dimensions(d);
    }
    builder
        .open()
        .await
        .map_err(|e| e.context(format!("opening the store `{}`", db.label())))
}
