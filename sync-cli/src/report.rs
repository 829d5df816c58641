//! What the commands print: errors, a run's progress (a bar, JSON lines or plain lines),
//! summaries, and the helpers every listing shares.

use std::borrow::Cow;
use std::io::{BufWriter, IsTerminal, StdoutLock, Write};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sync_core::{Error, Phase, SourceNotice, SyncEvent, SyncRecord};

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

/// A repository path in JSON output: `path` is always a string (lossy for a path that is
/// not UTF-8), and `path_bytes` holds the exact bytes when it is not UTF-8.
#[derive(Debug, Serialize)]
pub(crate) struct JsonPath<'a> {
    path: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    path_bytes: Option<&'a [u8]>,
}

impl<'a> JsonPath<'a> {
    pub(crate) fn new(path: &'a sync_core::RepoPath) -> Self {
        match path.to_str() {
            Some(text) => Self {
                path: Cow::Borrowed(text),
                path_bytes: None,
            },
            None => Self {
                path: path.to_string_lossy(),
                path_bytes: Some(path.as_bytes()),
            },
        }
    }
}

/// How events are shown.
pub(crate) enum Reporter {
    /// One JSON object per event on stdout.
    Json,
    /// A progress bar on stderr.
    Bar(ProgressBar),
    /// A line per phase on stderr (not a terminal).
    Plain,
}

impl Reporter {
    pub(crate) fn new(json: bool) -> Self {
        if json {
            Self::Json
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Self::Bar(bar)
        } else {
            Self::Plain
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
            Self::Bar(bar) => {
                show_on_bar(bar, event);
                Ok(())
            }
            Self::Plain => {
                if let Some(line) = plain_line(event) {
                    eprintln!("{line}");
                }
                Ok(())
            }
        }
    }

    /// Clears the progress display.
    pub(crate) fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }

    /// Whether the run's outcome should also be printed as a summary.
    pub(crate) fn wants_summary(&self) -> bool {
        !matches!(self, Self::Json)
    }
}

fn show_on_bar(bar: &ProgressBar, event: &SyncEvent) {
    match event {
        SyncEvent::Phase { phase } => bar.set_message(phase_name(*phase).to_owned()),
        SyncEvent::Scanned { .. } => {
            if let Some(line) = plain_line(event) {
                bar.println(line);
            }
        }
        SyncEvent::Progress(p) => {
            if bar.length().is_none() {
                bar.set_style(
                    ProgressStyle::with_template(
                        "{spinner} {msg:8} [{bar:40}] {pos}/{len} files  {prefix}  {elapsed}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
            }
            bar.set_length(p.files_total);
            bar.set_position(p.files_done);
            bar.set_prefix(format!(
                "{} / {}",
                human_bytes(p.bytes_done),
                human_bytes(p.bytes_total)
            ));
        }
        SyncEvent::Source(_) => {
            if let Some(line) = plain_line(event) {
                bar.println(line);
            }
        }
        _ => {}
    }
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
    format!(
        "run {} {}: `{}` at {};{restored} {} added, {} modified, {} deleted, {} renamed, {} unchanged; {} files{skipped}; {} entries written, {} superseded; {} blobs fetched ({})",
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
