//! [`PgProjects`]: the projects of a deployment as rows — which repository each one
//! mirrors, the branches it tracks, its tenant and its embedder — so that a server and any
//! number of workers read the same list.

use std::fmt;

use chrono::{DateTime, Utc};
use sqlx::FromRow;
use sqlx::postgres::PgPool;
use sync_core::{DEFAULT_TENANT, Error, RepoKey};

use crate::error;

/// One project: a repository kept in sync under a name unique within its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProjectSpec {
    /// The tenant the project and its memory belong to.
    pub tenant: String,
    /// Its name, unique within the tenant: letters, digits, `.`, `_` and `-`.
    pub name: String,
    /// The repository, as `projsync --source` takes it: `git:PATH`, a path, or
    /// `github:OWNER/NAME`.
    pub source: String,
    /// The branches whose pushes sync it; empty: its default branch.
    pub tracked_branches: Vec<String>,
    /// The embedder spec (`minilm`, `hash:64`, `openai:MODEL`, `none`); `None`: the
    /// default of the program that syncs it.
    pub embedder: Option<String>,
    /// When it was added (set by the database; ignored by [`PgProjects::add`]).
    pub created_at: Option<DateTime<Utc>>,
}

impl ProjectSpec {
    /// A project of the default tenant mirroring `source`, tracking its default branch.
    pub fn new(name: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            tenant: DEFAULT_TENANT.to_owned(),
            name: name.into(),
            source: source.into(),
            tracked_branches: Vec::new(),
            embedder: None,
            created_at: None,
        }
    }

    /// The project under `tenant`.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = tenant.into();
        self
    }

    /// Tracks these branches (instead of the default branch).
    pub fn with_tracked_branches<I, B>(mut self, branches: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: Into<String>,
    {
        self.tracked_branches = branches.into_iter().map(Into::into).collect();
        self
    }

    /// Embeds with this embedder spec.
    pub fn with_embedder(mut self, embedder: impl Into<String>) -> Self {
        self.embedder = Some(embedder.into());
        self
    }

    /// Refuses a project that could not be stored or used, saying what to change.
    pub fn validate(&self) -> Result<(), Error> {
        check_name(&self.name)?;
        check_tenant(&self.tenant)?;
        if self.source.trim().is_empty() {
            return Err(Error::invalid_input(format!(
                "project `{}` has no source; pass --source git:PATH or github:OWNER/NAME",
                self.name
            )));
        }
        for b in &self.tracked_branches {
            if b.trim().is_empty() || b.chars().any(char::is_control) {
                return Err(Error::invalid_input(format!(
                    "`{}` is not a branch name; pass --track with a branch of the repository",
                    b.escape_debug()
                )));
            }
        }
        if let Some(e) = &self.embedder
            && e.trim().is_empty()
        {
            return Err(Error::invalid_input(
                "the embedder spec is empty; leave it out for the default, or name one (`minilm`, `hash:64`, `openai:MODEL`, `none`)",
            ));
        }
        Ok(())
    }
}

/// Refuses a project name that is empty, too long, or has characters other than letters,
/// digits, `.`, `_` and `-` (names appear in URLs and command lines).
pub(crate) fn check_name(name: &str) -> Result<(), Error> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "`{}` is not a project name: use 1 to 100 letters, digits, `.`, `_` or `-`, not starting with `.`",
            name.escape_debug()
        )))
    }
}

/// Refuses a tenant the stores would refuse.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), Error> {
    RepoKey::new("tenant-check")
        .and_then(|k| k.with_tenant(tenant))
        .map(|_| ())
        .map_err(|e| e.context("checking the project's tenant"))
}

#[derive(FromRow)]
struct ProjectRow {
    tenant: String,
    name: String,
    source: String,
    tracked_branches: Vec<String>,
    embedder: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<ProjectRow> for ProjectSpec {
    fn from(r: ProjectRow) -> Self {
        Self {
            tenant: r.tenant,
            name: r.name,
            source: r.source,
            tracked_branches: r.tracked_branches,
            embedder: r.embedder,
            created_at: Some(r.created_at),
        }
    }
}

const COLUMNS: &str = "tenant, name, source, tracked_branches, embedder, created_at";

/// The projects of a deployment, kept in the store's database (table `sync_projects`).
///
/// Get one from [`PgStore::projects`](crate::PgStore::projects); it shares the store's
/// connections. The table is the operator's: it has no row-level security, and every
/// method names the tenant it reads or writes.
#[derive(Clone)]
pub struct PgProjects {
    pool: PgPool,
}

impl fmt::Debug for PgProjects {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgProjects").finish_non_exhaustive()
    }
}

impl PgProjects {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Adds a project. A project of that name in that tenant already is
    /// [`Error::Conflict`](sync_core::ErrorKind::Conflict).
    pub async fn add(&self, project: &ProjectSpec) -> Result<ProjectSpec, Error> {
        project.validate()?;
        let what = format!("adding project `{}`", project.name);
        let sql = format!(
            "INSERT INTO sync_projects (tenant, name, source, tracked_branches, embedder) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, name) DO NOTHING RETURNING {COLUMNS}"
        );
        let row: Option<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&project.tenant)
            .bind(&project.name)
            .bind(&project.source)
            .bind(&project.tracked_branches)
            .bind(&project.embedder)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error::map(&what, e))?;
        row.map(Into::into).ok_or_else(|| {
            Error::conflict(format!(
                "there is a project `{}` in tenant `{}` already; remove it first (`projsync project remove {}`), or pick another name",
                project.name, project.tenant, project.name
            ))
        })
    }

    /// The project `name` of `tenant`; a missing one is
    /// [`Error::NotFound`](sync_core::ErrorKind::NotFound).
    pub async fn get(&self, tenant: &str, name: &str) -> Result<ProjectSpec, Error> {
        let what = format!("reading project `{name}`");
        let sql = format!("SELECT {COLUMNS} FROM sync_projects WHERE tenant = $1 AND name = $2");
        let row: Option<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error::map(&what, e))?;
        row.map(Into::into).ok_or_else(|| not_found(tenant, name))
    }

    /// The projects of `tenant`, or of every tenant with `None`, by tenant and name.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<ProjectSpec>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sync_projects WHERE $1::text IS NULL OR tenant = $1 \
             ORDER BY tenant, name"
        );
        let rows: Vec<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error::map("listing the projects", e))?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Removes the project `name` of `tenant`; its waiting jobs fail with a note that it
    /// was removed. Its memory (runs, files, entries) stays in the store. A missing project
    /// is [`Error::NotFound`](sync_core::ErrorKind::NotFound).
    pub async fn remove(&self, tenant: &str, name: &str) -> Result<(), Error> {
        let what = format!("removing project `{name}`");
        let map = |e| error::map(&what, e);
        let mut tx = self.pool.begin().await.map_err(map)?;
        let removed = sqlx::query("DELETE FROM sync_projects WHERE tenant = $1 AND name = $2")
            .bind(tenant)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(map)?
            .rows_affected();
        if removed == 0 {
            return Err(not_found(tenant, name));
        }
        sqlx::query(
            "UPDATE sync_jobs SET status = 'failed', finished_at = now(), \
             error = 'the project was removed before the job ran' \
             WHERE tenant = $1 AND project = $2 AND status = 'pending'",
        )
        .bind(tenant)
        .bind(name)
        .execute(&mut *tx)
        .await
        .map_err(map)?;
        tx.commit().await.map_err(map)
    }
}

fn not_found(tenant: &str, name: &str) -> Error {
    Error::not_found(format!(
        "there is no project `{name}` in tenant `{tenant}`; `projsync project list` shows the projects, `projsync project add` adds one"
    ))
}
