//! `projsync project add | list | remove | sync`: the projects of a PostgreSQL store, which
//! `projsync worker` and `projsync serve` read, and requests to sync them.

use std::io::Write as _;

use serde_json::json;
use sync_core::{DEFAULT_TENANT, Error};
use sync_postgres::ProjectSpec;

use crate::cli::{ProjectAddArgs, ProjectCommand, ProjectListArgs, ProjectSyncArgs};
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report;

pub(super) async fn exec(target: &Target, command: &ProjectCommand) -> Result<Exit, Error> {
    let store = open::postgres(&target.db, "project", None).await?;
    let tenant = target.tenant.as_deref();
    let result = match command {
        ProjectCommand::Add(args) => add(&store, target, args).await,
        ProjectCommand::List(args) => list(&store, tenant, args).await,
        ProjectCommand::Remove(args) => store
            .projects()
            .remove(tenant.unwrap_or(DEFAULT_TENANT), &args.name)
            .await
            .map(|()| Exit::Success),
        ProjectCommand::Sync(args) => sync(&store, tenant.unwrap_or(DEFAULT_TENANT), args).await,
    };
    store.close().await;
    result
}

/// The source as stored: a local repository by its absolute path (`git:/abs/path`), so
/// that every worker finds it whatever its working directory; `github:` as given.
fn stored_source(spec: &str) -> Result<String, Error> {
    if spec.starts_with("github:") {
        return Ok(spec.to_owned());
    }
    let path = std::path::Path::new(spec.strip_prefix("git:").unwrap_or(spec));
    let abs = path.canonicalize().map_err(|e| {
        Error::not_found(format!(
            "there is no repository at `{}` ({e}); pass --source with a local git repository or github:OWNER/NAME",
            path.display()
        ))
    })?;
    // Check that it is a repository now rather than in every worker later.
    open::source(
        &open::SourceSpec::new(&format!("git:{}", abs.display())),
        None,
    )?;
    Ok(format!("git:{}", abs.display()))
}

async fn add(
    store: &sync_postgres::PgStore,
    target: &Target,
    args: &ProjectAddArgs,
) -> Result<Exit, Error> {
    let mut spec = ProjectSpec::new(&args.name, stored_source(target.source.spec())?)
        .with_tracked_branches(args.track.iter().cloned());
    if let Some(tenant) = &target.tenant {
        spec = spec.with_tenant(tenant);
    }
    if let Some(embedder) = &args.embedder {
        // Refuse a spec no worker could use.
        crate::embedder::EmbedderSpec::parse(embedder, true)?;
        spec = spec.with_embedder(embedder);
    }
    let added = store.projects().add(&spec).await?;
    report::write_stdout(|out| {
        writeln!(
            out,
            "added project `{}` of tenant `{}`: {}",
            added.name, added.tenant, added.source
        )
    })?;
    Ok(Exit::Success)
}

async fn list(
    store: &sync_postgres::PgStore,
    tenant: Option<&str>,
    args: &ProjectListArgs,
) -> Result<Exit, Error> {
    let projects = store.projects().list(tenant).await?;
    report::write_stdout(|out| {
        for p in &projects {
            if args.json.json {
                report::json_line(
                    out,
                    &json!({
                        "name": p.name,
                        "tenant": p.tenant,
                        "source": p.source,
                        "tracked_branches": p.tracked_branches,
                        "embedder": p.embedder,
                        "created_at": p.created_at,
                    }),
                )?;
            } else {
                let branches = if p.tracked_branches.is_empty() {
                    "(default branch)".to_owned()
                } else {
                    p.tracked_branches.join(",")
                };
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    p.name,
                    p.tenant,
                    p.source,
                    branches,
                    p.embedder.as_deref().unwrap_or("(default)")
                )?;
            }
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}

async fn sync(
    store: &sync_postgres::PgStore,
    tenant: &str,
    args: &ProjectSyncArgs,
) -> Result<Exit, Error> {
    // A request for a project that does not exist would only fail in a worker later.
    store.projects().get(tenant, &args.name).await?;
    let queued = store
        .queue()
        .enqueue(tenant, &args.name, args.branch.as_deref())
        .await?;
    report::write_stdout(|out| {
        if args.json.json {
            report::json_line(
                out,
                &json!({"id": queued.id, "coalesced": queued.coalesced}),
            )
        } else if queued.coalesced {
            writeln!(out, "{} (joined the waiting job)", queued.id)
        } else {
            writeln!(out, "{}", queued.id)
        }
    })?;
    Ok(Exit::Success)
}
