//! `projsync embed TEXT...`: the embedding of each text, one JSON array per line.

use std::io::BufRead;

use sync_core::Error;

use crate::cli::EmbedArgs;
use crate::embedder;
use crate::exit::Exit;
use crate::report;

pub(super) async fn exec(args: &EmbedArgs) -> Result<Exit, Error> {
    let texts = texts(&args.texts)?;
    let Some(embedder) = embedder::open(&args.embed, false).await? else {
        return Err(Error::invalid_input(
            "`projsync embed` needs an embedder that computes vectors",
        ));
    };
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let vectors = embedder.embed(&refs).await?;
    report::write_stdout(|out| {
        for v in &vectors {
            report::json_line(out, &v.as_slice())?;
        }
        Ok(())
    })?;
    Ok(Exit::Success)
}

/// The texts of the command line, each `-` replaced by the lines of stdin (read once).
fn texts(args: &[String]) -> Result<Vec<String>, Error> {
    let mut texts = Vec::new();
    let mut stdin_read = false;
    for arg in args {
        if arg != "-" {
            texts.push(arg.clone());
            continue;
        }
        if std::mem::replace(&mut stdin_read, true) {
            return Err(Error::invalid_input(
                "`-` (read stdin) may be given only once",
            ));
        }
        for line in std::io::stdin().lock().lines() {
            let line = line.map_err(|e| Error::Backend {
                backend: "stdin",
                message: "could not read the texts from stdin (one UTF-8 text per line)".to_owned(),
                retryable: false,
                source: Some(Box::new(e)),
            })?;
            texts.push(line);
        }
    }
    Ok(texts)
}
