//! `projsync run`: sync a branch into the store.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sync_core::{
    Embedder, Error, Extractor, FilePolicy, LineChunker, SyncOptions, Syncer, TokenBudget,
};
use sync_extract::SyntaxChunker;

use crate::cli::RunArgs;
use crate::embedder::{self, EmbedderSpec};
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report::{self, Reporter};

pub(super) async fn exec(target: &Target, args: &RunArgs) -> Result<Exit, Error> {
    let spec = EmbedderSpec::parse(
        args.embed
            .embedder
            .as_deref()
            .unwrap_or(embedder::DEFAULT_SPEC),
        true,
    )?;
    let source = open::source(&target.source, args.api.api_url.as_deref())?;
    let mut policy = FilePolicy::builder().max_file_size(args.max_file_size);
    for glob in &args.include {
        policy = policy.include(glob);
    }
    for glob in &args.exclude {
        policy = policy.exclude(glob);
    }
    let policy = policy.build()?;
    let embedder = spec.open(&args.embed).await?;
    let store = open::store(&target.db, true, embedder.as_ref().map(|e| e.dimensions())).await?;
    let mut syncer = Syncer::new(source, store)?
        .with_policy(policy)
        .with_extractor(extractor(args, embedder.as_deref()))
        .with_options(SyncOptions::default().lease(Duration::from_secs(args.lease.max(1))));
    if let Some(tenant) = &target.tenant {
        syncer = syncer.with_tenant(tenant)?;
    }
    if let Some(embedder) = embedder {
        syncer = syncer.with_embedder(embedder);
    }

    let mut reporter = Reporter::new(args.json);
    let mut stream = syncer.run(args.branch.as_deref());
    // The first Ctrl-C cancels the run, which then ends cleanly (its staged rows removed,
    // the repository free at once); a second one stops without waiting.
    let mut interrupted = false;
    // Kept across iterations: once polled, it records a Ctrl-C arriving between polls.
    let mut ctrl_c = Box::pin(tokio::signal::ctrl_c());
    loop {
        tokio::select! {
            event = stream.next() => {
                let Some(event) = event else { break };
                if reporter.event(&event).is_err() {
                    // Nobody reads the output any more: stop, leaving the store as it was.
                    stream.cancel();
                }
            }
            _ = &mut ctrl_c => {
                ctrl_c = Box::pin(tokio::signal::ctrl_c());
                reporter.finish();
                if interrupted {
                    eprintln!(
                        "interrupted again: stopping now; the run holds the repository until its lease expires (at most {} s)",
                        args.lease.max(1)
                    );
                    return Ok(Exit::Interrupted);
                }
                interrupted = true;
                eprintln!("interrupted: cancelling the run; the active state stays as it was, the vectors computed so far are kept (Ctrl-C again to stop at once)");
                stream.cancel();
            }
        }
    }
    reporter.finish();
    let record = stream.finish().await?;
    if reporter.wants_summary() {
        report::write_stdout(|out| {
            use std::io::Write as _;
            writeln!(out, "{}", report::summary(&record))
        })?;
    }
    Ok(Exit::Success)
}

/// The extractor `--chunker` names, sized for `embedder`.
fn extractor(args: &RunArgs, embedder: Option<&dyn Embedder>) -> Arc<dyn Extractor> {
    match args.chunker.as_str() {
        "lines" => Arc::new(LineChunker::new(args.chunk_size)),
        _ => Arc::new(SyntaxChunker::new(TokenBudget::of(embedder))),
    }
}
