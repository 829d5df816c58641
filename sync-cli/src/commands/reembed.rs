//! `projsync reembed`: the missing embeddings of a model for the active entries, computed
//! from the entry text in the store, without reading the repository.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sync_core::{Error, ReembedProgress, ReembedStats, SyncOptions};

use crate::cli::ReembedArgs;
use crate::embedder;
use crate::exit::Exit;
use crate::open::{self, Target};
use crate::report;

/// How often plain output (stderr not a terminal) reports the embedding.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// The summary of `reembed --json`.
#[derive(Serialize)]
struct JsonSummary<'a> {
    model: &'a str,
    #[serde(flatten)]
    stats: ReembedStats,
}

pub(super) async fn exec(target: &Target, args: &ReembedArgs) -> Result<Exit, Error> {
    let Some(embedder) = embedder::open(&args.embed, false).await? else {
        return Err(Error::invalid_input(
            "`projsync reembed` needs an embedder that computes vectors",
        ));
    };
    let source = open::source(&target.source, None)?;
    let key = open::repo_key(source.as_ref(), target.tenant.as_deref())?;
    let store = open::store(&target.db, false, Some(embedder.dimensions())).await?;
    let model = embedder.model().to_owned();

    let mut shown = Shown::new();
    let stats = sync_core::reembed(
        store.as_ref(),
        &key,
        embedder.as_ref(),
        SyncOptions::default().embed_batch,
        |p| shown.progress(&p),
    )
    .await;
    shown.finish();
    let stats = stats?;
    report::write_stdout(|out| {
        if args.json.json {
            report::json_line(
                out,
                &JsonSummary {
                    model: &model,
                    stats,
                },
            )
        } else {
            writeln!(
                out,
                "reembed with `{model}`: computed {} embeddings{}, reused {}; {} distinct texts in {} active entries",
                stats.computed,
                report::tokens(stats.tokens),
                stats.reused,
                stats.texts,
                stats.entries
            )
        }
    })?;
    Ok(Exit::Success)
}

/// Progress on stderr: a bar on a terminal, otherwise a line now and then.
struct Shown {
    bar: Option<ProgressBar>,
    started: Instant,
    last: Option<Instant>,
    latest: ReembedProgress,
}

impl Shown {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} reembed [{bar:30}] {pos}/{len} texts embedded, {per_sec}, ETA {eta}  ({msg})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last: None,
            latest: ReembedProgress::default(),
        }
    }

    fn progress(&mut self, p: &ReembedProgress) {
        self.latest = *p;
        if let Some(bar) = &self.bar {
            bar.set_length(p.texts_to_embed);
            bar.set_position(p.texts_embedded);
            bar.set_message(format!("{} entries read", p.entries));
            return;
        }
        let now = Instant::now();
        if p.texts_embedded > 0 && self.last.is_none_or(|t| now - t >= LOG_EVERY) {
            self.last = Some(now);
            eprintln!("{}", self.line(now));
        }
    }

    /// Texts embedded of those found missing so far, and the rate.
    fn line(&self, now: Instant) -> String {
        let p = &self.latest;
        let rate = p.texts_embedded as f64 / (now - self.started).as_secs_f64().max(1e-3);
        format!(
            "embedded {} of {} texts ({rate:.1}/s); {} entries read",
            p.texts_embedded, p.texts_to_embed, p.entries
        )
    }

    fn finish(&self) {
        match &self.bar {
            Some(bar) => bar.finish_and_clear(),
            None if self.latest.texts_embedded > 0 => eprintln!("{}", self.line(Instant::now())),
            None => {}
        }
    }
}
