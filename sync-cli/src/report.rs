//! What the commands print: errors, a run's progress (a bar, JSON lines or plain lines),
//! summaries, and the helpers every listing shares.

use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sync_core::{Error, Phase, Progress, SourceNotice, SyncEvent, SyncRecord};

use crate::dburl::DbSpec;
use crate::exit::Exit;

/// Prints an error the way every command does (`error: …` on stderr, the store's
/// password scrubbed) and returns the exit status of its kind.
pub(crate) fn fail(error: &Error, db: &DbSpec) -> Exit {
    eprintln!("error: {}", db.scrub(&error.to_string()));
    Exit::from(error)
}

/// Writes a command's output to stdout, buffered. Output cut short by a closed pipe
/// (`projsync ls | head`) is not an error.
pub(crate) fn write_stdout(
    write: impl FnOnce(&mut BufWriter<StdoutLock<'static>>) -> std::io::Result<()>,
) -> Result<(), Error> {
    let mut out = BufWriter::new(std::io::stdout().lock());
    match write(&mut out).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Backend {
            backend: "stdout",
            message: "could not write the output".to_owned(),
            retryable: false,
            source: Some(Box::new(e)),
        }),
        _ => Ok(()),
    }
}

/// Writes `value` as one line of JSON.
pub(crate) fn json_line(out: &mut impl Write, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")
}

/// How events are shown.
pub(crate) enum Reporter {
    /// One JSON object per event on stdout.
    Json,
    /// A progress bar on stderr, and the template it shows now.
    Bar(ProgressBar, Option<&'static str>),
    /// A line per phase on stderr (not a terminal), and one about the embedding now and
    /// then.
    Plain(EmbedLog),
}

/// When the embedding started and when it was last reported, for plain output.
#[derive(Default)]
pub(crate) struct EmbedLog {
    started: Option<(Instant, u64)>,
    last: Option<Instant>,
    finished: bool,
}

/// How often plain output reports the embedding.
const EMBED_LOG_EVERY: Duration = Duration::from_secs(30);

impl EmbedLog {
    /// A line about the embedding, at most every [`EMBED_LOG_EVERY`] and once at the end.
    fn line(&mut self, p: &Progress) -> Option<String> {
        if p.texts_to_embed == 0 {
            return None;
        }
        let now = Instant::now();
        let (since, from) = *self.started.get_or_insert((now, p.texts_embedded));
        let total = estimated_texts(p);
        let done = p.texts_embedded >= total && p.files_done >= p.files_total;
        if self.finished || (!done && self.last.is_some_and(|t| now - t < EMBED_LOG_EVERY)) {
            return None;
        }
        self.last = Some(now);
        self.finished = done;
        if p.texts_embedded == from {
            return Some(format!(
                "embedding ~{total} texts; {} of {} files read",
                p.files_done, p.files_total
            ));
        }
        let secs = (now - since).as_secs_f64();
        let rate = (p.texts_embedded - from) as f64 / secs.max(1e-3);
        let eta = if rate > 0.0 && !done {
            let left = total.saturating_sub(p.texts_embedded) as f64 / rate;
            format!(", about {} left", human_duration(left))
        } else {
            String::new()
        };
        Some(format!(
            "embedded {} of ~{total} texts ({rate:.1}/s{eta}); {} of {} files read",
            p.texts_embedded, p.files_done, p.files_total
        ))
    }
}

/// Seconds as `1h 02m`, `3m 04s` or `5s`.
fn human_duration(secs: f64) -> String {
    let s = secs.round() as u64;
    if s >= 3600 {
        format!("{}h {:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Reporter {
    pub(crate) fn new(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Self::Bar(bar, None)
        } else {
            Self::Plain(EmbedLog::default())
        }
    }

    /// Shows one event. Fails only when stdout is gone (a closed pipe).
    pub(crate) fn event(&mut self, event: &SyncEvent) -> std::io::Result<()> {
        match self {
            Self::Json => {
                let mut out = std::io::stdout().lock();
                json_line(&mut out, event)?;
                out.flush()
            }
            Self::Bar(bar, template) => {
                show_on_bar(bar, template, event);
                Ok(())
            }
            Self::Plain(log) => {
                let line = match event {
                    SyncEvent::Progress(p) => log.line(p),
                    _ => plain_line(event),
                };
                if let Some(line) = line {
                    eprintln!("{line}");
                }
                Ok(())
            }
        }
    }

    /// Clears the progress display.
    pub(crate) fn finish(&self) {
        if let Self::Bar(bar, _) = self {
            bar.finish_and_clear();
        }
    }

    /// Whether the run's outcome should also be printed as a summary.
    pub(crate) fn wants_summary(&self) -> bool {
        !matches!(self, Self::Json)
    }
}

fn show_on_bar(bar: &ProgressBar, shown: &mut Option<&'static str>, event: &SyncEvent) {
    match event {
        SyncEvent::Phase { phase } => bar.set_message(phase_name(*phase).to_owned()),
        SyncEvent::FullScan { .. } | SyncEvent::Scanned { .. } => {
            if let Some(line) = plain_line(event) {
                bar.println(line);
            }
        }
        SyncEvent::Progress(p) => show_progress(bar, shown, p),
        SyncEvent::Source(_) => {
            if let Some(line) = plain_line(event) {
                bar.println(line);
            }
        }
        _ => {}
    }
}

/// The bar counts files until the first text is to be embedded, then texts embedded (with
/// their rate and the time left), the files read so far beside it.
fn show_progress(bar: &ProgressBar, shown: &mut Option<&'static str>, p: &Progress) {
    let files = format!(
        "{}/{} files, {} / {}",
        p.files_done,
        p.files_total,
        human_bytes(p.bytes_done),
        human_bytes(p.bytes_total)
    );
    let (template, position, length, prefix) = if p.texts_to_embed == 0 {
        (FILES_TEMPLATE, p.files_done, p.files_total, String::new())
    } else {
        (
            TEXTS_TEMPLATE,
            p.texts_embedded,
            estimated_texts(p),
            files.clone(),
        )
    };
    if *shown != Some(template) {
        *shown = Some(template);
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.reset_eta();
    }
    bar.set_length(length);
    bar.set_position(position);
    bar.set_prefix(if prefix.is_empty() { files } else { prefix });
}

/// The bar while no text is embedded: files read of the total.
const FILES_TEMPLATE: &str = "{spinner} {msg:8} [{bar:40}] {pos}/{len} files  {prefix}  {elapsed}";
/// The bar while texts are embedded: texts embedded of the (estimated) total, the rate and
/// the time left.
const TEXTS_TEMPLATE: &str =
    "{spinner} {msg:8} [{bar:30}] {pos}/~{len} texts embedded, {per_sec}, ETA {eta}  ({prefix})";

/// The texts a run will embed, estimated: those found so far, scaled up by the bytes not
/// read yet (texts are found only as their files are read).
fn estimated_texts(p: &Progress) -> u64 {
    if p.bytes_done == 0 || p.bytes_done >= p.bytes_total {
        return p.texts_to_embed;
    }
    let scaled = p.texts_to_embed as f64 * p.bytes_total as f64 / p.bytes_done as f64;
    (scaled.round() as u64).max(p.texts_to_embed)
}

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Prepare => "prepare",
        Phase::Scan => "scan",
        Phase::Import => "import",
        Phase::Finalize => "finalize",
    }
}

fn plain_line(event: &SyncEvent) -> Option<String> {
    Some(match event {
        SyncEvent::Prepared {
            sync_id,
            branch,
            commit,
            ..
        } => format!("run {sync_id}: syncing `{branch}` at {commit}"),
        SyncEvent::FullScan { reason } => format!("scan: listing the whole tree ({reason})"),
        SyncEvent::Scanned {
            counts,
            to_fetch,
            bytes_to_fetch,
            unchanged_head,
        } => {
            if *unchanged_head {
                "scan: the head is unchanged since the last run, nothing to do".to_owned()
            } else {
                format!(
                    "scan: {} added, {} modified, {} deleted, {} renamed, {} unchanged; {} blobs ({}) to fetch",
                    counts.added,
                    counts.modified,
                    counts.deleted,
                    counts.renamed,
                    counts.unchanged,
                    to_fetch,
                    human_bytes(*bytes_to_fetch)
                )
            }
        }
        SyncEvent::Source(SourceNotice::RateLimited { until, resource }) => {
            format!("rate limited ({resource}): waiting until {until}")
        }
        SyncEvent::Source(SourceNotice::Retrying {
            attempt, reason, ..
        }) => format!("retrying (attempt {attempt}): {reason}"),
        _ => return None,
    })
}

/// One line about a finished run.
pub(crate) fn summary(record: &SyncRecord) -> String {
    let s = &record.stats;
    let mut skipped = Vec::new();
    for (n, what) in [
        (s.skipped_too_large, "too large"),
        (s.skipped_binary, "binary"),
        (s.symlinks, "symlinks"),
    ] {
        if n > 0 {
            skipped.push(format!("{n} {what}"));
        }
    }
    let skipped = if skipped.is_empty() {
        String::new()
    } else {
        format!(" ({} without entries)", skipped.join(", "))
    };
    let restored = record
        .restored_from
        .map(|r| format!(" restored from run {r};"))
        .unwrap_or_default();
    let embedded = if s.embeddings_computed + s.embeddings_reused > 0 {
        format!(
            "; {} texts embedded{}, {} embeddings reused",
            s.embeddings_computed,
            tokens(s.embedding_tokens),
            s.embeddings_reused
        )
    } else {
        String::new()
    };
    format!(
        "run {} {}: `{}` at {};{restored} {} added, {} modified, {} deleted, {} renamed, {} unchanged; {} files{skipped}; {} entries written, {} superseded; {} blobs fetched ({}){embedded}",
        record.id,
        record.status,
        record.branch,
        record.commit,
        s.added,
        s.modified,
        s.deleted,
        s.renamed,
        s.unchanged,
        s.files,
        s.entries_written,
        s.entries_superseded,
        s.blobs_fetched,
        human_bytes(s.bytes_fetched),
    )
}

/// ` (N tokens)` for the tokens an embedder reported; nothing when it reported none.
pub(crate) fn tokens(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} tokens)")
    }
}

/// Bytes in binary units.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use sync_core::Progress;

    use super::{estimated_texts, human_duration};

    #[test]
    fn the_text_total_is_scaled_by_the_bytes_still_to_read() {
        let p = |texts_to_embed, bytes_done, bytes_total| Progress {
            bytes_done,
            bytes_total,
            texts_to_embed,
            ..Progress::default()
        };
        assert_eq!(estimated_texts(&p(10, 25, 100)), 40, "a quarter read");
        assert_eq!(estimated_texts(&p(10, 100, 100)), 10, "all read: exact");
        assert_eq!(estimated_texts(&p(0, 0, 100)), 0);
        assert_eq!(estimated_texts(&p(7, 0, 100)), 7);
    }

    #[test]
    fn a_full_scan_is_shown_with_its_reason() {
        use sync_core::{FullScanReason, SyncEvent};
        let line = super::plain_line(&SyncEvent::FullScan {
            reason: FullScanReason::SourceCannotDiff {
                detail: "the last synced commit 12ab is no longer in `git:/r`".into(),
            },
        });
        assert_eq!(
            line.as_deref(),
            Some(
                "scan: listing the whole tree (the last synced commit 12ab is no longer in `git:/r`)"
            )
        );
        let line = super::plain_line(&SyncEvent::FullScan {
            reason: FullScanReason::SettingsChanged,
        });
        assert_eq!(
            line.as_deref(),
            Some("scan: listing the whole tree (the settings changed since the last run)")
        );
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(human_duration(5.4), "5s");
        assert_eq!(human_duration(184.0), "3m 04s");
        assert_eq!(human_duration(3720.0), "1h 02m");
    }
}
