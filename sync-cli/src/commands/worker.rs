//! `projsync worker`: takes sync jobs from the PostgreSQL queue ([`sync_postgres::PgQueue`])
//! and runs each with the core's [`Syncer`], the project's source, embedder and tenant read
//! from its row ([`sync_postgres::PgProjects`]).
//!
//! The queue decides what may run (one job per project, leases, coalescing); the store's
//! chain of runs stays the final guard. Here is the worker's part of the policy:
//!
//! * a job's lease is renewed every third of `--lease` while its sync runs; if a renewal
//!   finds the job taken over (this worker was cut off for longer than the lease), the
//!   sync is cancelled and its outcome discarded;
//! * a retryable failure (the source or store unavailable, a rate limit, another run
//!   holding the repository) waits and tries again — 1, 2, 4 … seconds (at most five
//!   minutes), or until a rate limit's reset — while attempts are left; any other failure
//!   ends the job with its message (passwords of `--db` scrubbed);
//! * a job's events are written to the database every tenth of a second
//!   ([`sync_postgres::PgEventWriter`]), the terminal one before the outcome, so that
//!   every server streams them; events of the project's jobs that ended over a week ago
//!   are deleted as a job of the project starts;
//! * Ctrl-C stops taking jobs and lets the running ones end; a second Ctrl-C stops at once
//!   (the jobs are taken over by other workers when their leases expire).
//!
//! With `--poll-interval`, a [`PgPoller`] runs beside the slots and queues a job for each
//! tracked branch whose head moved (see the command's help for why it runs here).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use serde_json::json;
use sync_core::{
    Embedder, Error, SyncEvent, SyncOptions, SyncRecord, SyncStore, Syncer, TokenBudget,
};
use sync_extract::SyntaxChunker;
use sync_postgres::{
    FailOutcome, OpenSource, PgEventWriter, PgEvents, PgPoller, PgStore, PollOptions, PollReport,
    ProjectSpec, SyncJob,
};
use tokio::sync::{Mutex, watch};

use crate::cli::WorkerArgs;
use crate::embedder::{self, EmbedderSpec};
use crate::exit::Exit;
use crate::open::{self, SourceSpec, Target};
use crate::report;

/// How often a running sync's new events are written for the servers' event streams.
const EVENT_FLUSH: Duration = Duration::from_millis(100);

/// What every slot of the worker shares.
struct Worker {
    target: Target,
    args: WorkerArgs,
    /// The store without a fixed dimension: the queue and the projects.
    base: PgStore,
    /// Stores by embedding dimension, opened on first use.
    stores: Mutex<HashMap<Option<usize>, Arc<PgStore>>>,
    /// Embedders by spec, built on first use (loading a model once).
    embedders: Mutex<HashMap<String, Option<Arc<dyn Embedder>>>>,
    lease: Duration,
    stop: watch::Receiver<bool>,
}

pub(super) async fn exec(target: &Target, args: &WorkerArgs) -> Result<Exit, Error> {
    if let Some(spec) = &args.embed.embedder {
        EmbedderSpec::parse(spec, true)?;
    }
    let base = open::postgres(&target.db, "worker", None).await?;
    let (stop_tx, stop) = watch::channel(false);
    let worker = Arc::new(Worker {
        target: target.clone(),
        args: args.clone(),
        base,
        stores: Mutex::default(),
        embedders: Mutex::default(),
        lease: Duration::from_secs(args.lease),
        stop,
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    let pid = std::process::id();
    let slots: Vec<_> = (0..args.concurrency)
        .map(|slot| {
            let worker = Arc::clone(&worker);
            let id = format!("{host}:{pid}:{slot}");
            tokio::spawn(async move { worker.slot(&id).await })
        })
        .collect();
    eprintln!(
        "worker {host}:{pid} taking sync jobs from {} ({} at a time); Ctrl-C to stop",
        target.db.label(),
        args.concurrency
    );
    let poller = args.poll_interval.map(|interval| {
        eprintln!(
            "polling the tracked branches of every project every {interval:?} ±{} %",
            args.poll_jitter
        );
        tokio::spawn(poll(
            worker.base.clone(),
            args.api.api_url.clone(),
            PollOptions::default()
                .interval(interval)
                .jitter(f64::from(args.poll_jitter) / 100.0),
            worker.stop.clone(),
        ))
    });
    let all = futures::future::join_all(slots);
    tokio::pin!(all);
    let mut interrupts = 0;
    let results = loop {
        tokio::select! {
            results = &mut all => break results,
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                if interrupts > 1 {
                    eprintln!("interrupted again: stopping now; the running jobs are taken over when their leases expire (at most {} s)", args.lease);
                    return Ok(Exit::Interrupted);
                }
                eprintln!("interrupted: taking no more jobs, waiting for the running ones (Ctrl-C again to stop at once)");
                stop_tx.send_replace(true);
            }
        }
    };
    if let Some(poller) = poller {
        // The slots may have ended on an error rather than Ctrl-C: stop the poller too.
        stop_tx.send_replace(true);
        match poller.await {
            Ok(report) => eprintln!(
                "the poller queued {} syncs ({} polls of a project, {} failed)",
                report.enqueued, report.projects, report.errors
            ),
            Err(join) => {
                return Err(Error::Backend {
                    backend: "projsync worker",
                    message: "the poller task panicked".to_owned(),
                    retryable: false,
                    source: Some(Box::new(join)),
                });
            }
        }
    }
    worker.base.close().await;
    for result in results {
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(join) => {
                return Err(Error::Backend {
                    backend: "projsync worker",
                    message: "a worker task panicked".to_owned(),
                    retryable: false,
                    source: Some(Box::new(join)),
                });
            }
        }
    }
    Ok(if interrupts > 0 {
        Exit::Interrupted
    } else {
        Exit::Success
    })
}

/// Polls the projects' tracked branches until `stop` turns true.
async fn poll(
    store: PgStore,
    api_url: Option<String>,
    options: PollOptions,
    mut stop: watch::Receiver<bool>,
) -> PollReport {
    let open: OpenSource = Arc::new(move |project: &ProjectSpec, cache| {
        open::poll_source(&SourceSpec::new(&project.source), api_url.as_deref(), cache)
    });
    let mut poller = PgPoller::new(store, open).with_options(options);
    poller
        .run(async move {
            while !*stop.borrow() {
                if stop.changed().await.is_err() {
                    return;
                }
            }
        })
        .await
}

impl Worker {
    /// One slot: takes a job, runs it, and again, until stopped.
    async fn slot(&self, id: &str) -> Result<(), Error> {
        let queue = self.base.queue();
        let poll = Duration::from_millis(self.args.poll);
        let mut stop = self.stop.clone();
        let mut unavailable = 0u32;
        while !*stop.borrow() {
            match queue.claim(id, self.lease).await {
                Ok(Some(job)) => {
                    unavailable = 0;
                    match self.run(job).await {
                        // The queue was away when the outcome was recorded: the job's
                        // lease expires and it runs again (a sync of an unchanged head
                        // writes only its run).
                        Err(e) if e.is_retryable() => self.warn(&e),
                        other => other?,
                    }
                    continue;
                }
                Ok(None) => unavailable = 0,
                // The database is away for a moment: keep trying, quietly at first.
                Err(e) if e.is_retryable() => {
                    unavailable += 1;
                    if unavailable == 1 || unavailable.is_multiple_of(30) {
                        eprintln!(
                            "warning: {}; trying again",
                            self.target.db.scrub(&e.to_string())
                        );
                    }
                }
                Err(e) => return Err(e),
            }
            tokio::select! {
                () = tokio::time::sleep(poll) => {}
                _ = stop.changed() => {}
            }
        }
        Ok(())
    }

    /// Runs one job to its end and records the outcome in the queue.
    async fn run(&self, job: SyncJob) -> Result<(), Error> {
        let queue = self.base.queue();
        self.say(&job, "started", None, None);
        let (outcome, lost) = self.sync(&job).await;
        if lost {
            self.say(
                &job,
                "lost",
                None,
                Some("its lease expired and another worker took it over"),
            );
            return Ok(());
        }
        match outcome {
            Ok(record) => {
                if queue.complete(&job, record.id).await? {
                    self.say(&job, "completed", Some(&record), None);
                } else {
                    self.say(
                        &job,
                        "lost",
                        Some(&record),
                        Some("completed after its lease expired"),
                    );
                }
            }
            Err(e) => {
                let message = self.target.db.scrub(&e.to_string()).into_owned();
                let retry = e.retry_delay(job.attempts);
                let status = match queue.fail(&job, &message, retry).await? {
                    FailOutcome::Retrying(_) => "retrying",
                    FailOutcome::Coalesced(_) => "coalesced",
                    FailOutcome::Failed => "failed",
                    _ => "lost",
                };
                self.say(&job, status, None, Some(&message));
            }
        }
        Ok(())
    }

    /// Syncs the job's branch, renewing its lease and writing its events for the
    /// servers' event streams; also whether the job was lost.
    async fn sync(&self, job: &SyncJob) -> (Result<SyncRecord, Error>, bool) {
        let events = self.base.events();
        if let Err(e) = events
            .prune(&job.tenant, &job.project, PgEvents::DEFAULT_KEEP)
            .await
        {
            self.warn(&e);
        }
        let mut writer = events.writer(job);
        let syncer = match self.syncer(job).await {
            Ok(s) => s,
            Err(e) => {
                // The run never started: its stream says why, and ends.
                let mut error = e.report();
                error.message = self.target.db.scrub(&error.message).into_owned();
                writer.push(&SyncEvent::Failed {
                    sync_id: None,
                    error,
                });
                self.flush(&mut writer).await;
                return (Err(e), false);
            }
        };
        let queue = self.base.queue();
        let mut stream = syncer.run(job.branch.as_deref());
        let mut renew = tokio::time::interval(self.lease / 3);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        renew.tick().await;
        let mut flush = tokio::time::interval(EVENT_FLUSH);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost = false;
        loop {
            tokio::select! {
                event = stream.next() => match event {
                    None => break,
                    Some(event) => {
                        writer.push(&event);
                        if let SyncEvent::Prepared { sync_id, .. } = event
                            && let Err(e) = queue.set_sync_id(job, sync_id).await
                        {
                            self.warn(&e);
                        }
                    }
                },
                _ = flush.tick(), if writer.has_pending() => match writer.flush().await {
                    Ok(_) => {}
                    // The events stay and go with the next flush.
                    Err(e) => self.warn(&e),
                },
                _ = renew.tick(), if !lost => match queue.renew(job, self.lease).await {
                    Ok(true) => {}
                    Ok(false) => {
                        lost = true;
                        stream.cancel();
                    }
                    // The lease runs on; the next tick tries again.
                    Err(e) => self.warn(&e),
                },
            }
        }
        let outcome = stream.finish().await;
        // The terminal event is written before the queue hears the outcome, so a stream
        // that sees the job ended has seen every event.
        self.flush(&mut writer).await;
        (outcome, lost)
    }

    /// Writes the events left, trying once more after an error.
    async fn flush(&self, writer: &mut PgEventWriter) {
        for attempt in 0..2 {
            match writer.flush().await {
                Ok(_) => return,
                Err(e) if attempt == 0 && e.is_retryable() => {
                    tokio::time::sleep(EVENT_FLUSH).await;
                }
                Err(e) => {
                    self.warn(&e.context("writing the events of a sync"));
                    return;
                }
            }
        }
    }

    /// The syncer of the job's project: its source, tenant and embedder, the store for
    /// the embedder's dimension, the syntax chunker sized for the embedder.
    async fn syncer(&self, job: &SyncJob) -> Result<Syncer, Error> {
        let project: ProjectSpec = self.base.projects().get(&job.tenant, &job.project).await?;
        let spec = project
            .embedder
            .as_deref()
            .or(self.args.embed.embedder.as_deref())
            .unwrap_or(embedder::DEFAULT_SPEC);
        let embedder = self.embedder(spec).await?;
        let store = self
            .store(embedder.as_ref().map(|e| e.dimensions()))
            .await?;
        let source = open::source(
            &SourceSpec::new(&project.source),
            self.args.api.api_url.as_deref(),
        )?;
        let mut syncer = Syncer::new(source, store)?
            .with_extractor(Arc::new(SyntaxChunker::new(TokenBudget::of(
                embedder.as_deref(),
            ))))
            .with_options(SyncOptions::default().lease(self.lease));
        syncer = syncer.with_tenant(&project.tenant)?;
        if let Some(embedder) = embedder {
            syncer = syncer.with_embedder(embedder);
        }
        Ok(syncer)
    }

    async fn embedder(&self, spec: &str) -> Result<Option<Arc<dyn Embedder>>, Error> {
        let mut embedders = self.embedders.lock().await;
        if let Some(e) = embedders.get(spec) {
            return Ok(e.clone());
        }
        let embedder = EmbedderSpec::parse(spec, true)
            .map_err(|e| e.context("reading the project's embedder"))?
            .open(&self.args.embed)
            .await?;
        embedders.insert(spec.to_owned(), embedder.clone());
        Ok(embedder)
    }

    async fn store(&self, dimensions: Option<usize>) -> Result<Arc<dyn SyncStore>, Error> {
        let mut stores = self.stores.lock().await;
        if let Some(s) = stores.get(&dimensions) {
            return Ok(Arc::clone(s) as Arc<dyn SyncStore>);
        }
        let store = Arc::new(open::postgres(&self.target.db, "worker", dimensions).await?);
        stores.insert(dimensions, Arc::clone(&store));
        Ok(store)
    }

    fn warn(&self, e: &Error) {
        eprintln!("warning: {}", self.target.db.scrub(&e.to_string()));
    }

    /// Prints what happened to a job: a JSON object per line with `--json`, else a line
    /// of text.
    fn say(&self, job: &SyncJob, status: &str, record: Option<&SyncRecord>, note: Option<&str>) {
        let branch = job.branch.as_deref().unwrap_or("(default branch)");
        let worker = job.worker.as_deref().unwrap_or_default();
        let printed = report::write_stdout(|out| {
            if self.args.json {
                report::json_line(
                    out,
                    &json!({
                        "job": job.id,
                        "tenant": job.tenant,
                        "project": job.project,
                        "branch": job.branch,
                        "attempt": job.attempts,
                        "worker": worker,
                        "status": status,
                        "sync_id": record.map(|r| r.id),
                        "error": note,
                    }),
                )
            } else {
                write!(
                    out,
                    "job {} {}/{} {branch}: {status} (attempt {}, {worker})",
                    job.id, job.tenant, job.project, job.attempts
                )?;
                if let Some(r) = record {
                    write!(out, ": run {}", r.id)?;
                }
                if let Some(note) = note {
                    write!(out, ": {note}")?;
                }
                writeln!(out)
            }
        });
        if let Err(e) = printed {
            self.warn(&e);
        }
    }
}
