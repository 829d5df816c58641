//! One module per command, each with one `exec` taking the common [`Target`] and the
//! command's own arguments.

mod branches;
mod changes;
mod embed;
mod history;
mod ls;
mod mcp;
mod project;
mod reembed;
mod restore;
mod run;
mod search;
mod serve;
mod worker;

use sync_core::Error;

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
        Command::Changes(args) => changes::exec(target, args).await,
        Command::Embed(args) => embed::exec(args).await,
        Command::Reembed(args) => reembed::exec(target, args).await,
        Command::Serve(args) => serve::exec(target, args).await,
        Command::Mcp(args) => mcp::exec(target, args).await,
        Command::Project(command) => project::exec(target, command).await,
        Command::Worker(args) => worker::exec(target, args).await,
    }
}
