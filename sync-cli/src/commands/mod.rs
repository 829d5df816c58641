//! One module per command, each with one `exec` taking the common [`Target`] and the
//! command's own arguments.

mod branches;
mod history;
mod ls;
mod restore;
mod run;
mod search;

use sync_core::{Error, HashEmbedder};

use crate::cli::Command;
use crate::exit::Exit;
use crate::open::Target;

/// Runs `command` on `target`.
pub(crate) async fn dispatch(target: &Target, command: &Command) -> Result<Exit, Error> {
    match command {
        Command::Run(args) => run::exec(target, args).await,
        Command::Ls(args) => ls::exec(target, args).await,
        Command::History(args) => history::exec(target, args).await,
        Command::Restore(args) => restore::exec(target, args).await,
        Command::Branches(args) => branches::exec(target, args).await,
        Command::Search(args) => search::exec(target, args).await,
    }
}

/// `hash` or `hash:DIMS`.
fn parse_embedder(spec: &str) -> Result<HashEmbedder, Error> {
    let dims = match spec.split_once(':') {
        None if spec == "hash" => 256,
        Some(("hash", dims)) => dims
            .parse()
            .ok()
            .filter(|d| (1..=8192).contains(d))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "`{dims}` is not a number of dimensions (1 to 8192)"
                ))
            })?,
        _ => {
            return Err(Error::invalid_input(format!(
                "unknown embedder `{spec}`: use `hash` or `hash:DIMS`"
            )));
        }
    };
    Ok(HashEmbedder::new(dims))
}

#[cfg(test)]
mod tests {
    use super::parse_embedder;
    use sync_core::{Embedder, ErrorKind};

    #[test]
    fn embedder_specs() {
        assert_eq!(parse_embedder("hash").unwrap().dimensions(), 256);
        assert_eq!(parse_embedder("hash:64").unwrap().dimensions(), 64);
        for bad in ["hash:0", "hash:x", "hash:9000", "openai", ""] {
            let e = parse_embedder(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }
}
