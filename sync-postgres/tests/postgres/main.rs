//! Tests of sync-postgres against a real PostgreSQL beyond the conformance suite:
//! migrations, the database's own history rules under racing processes, row-level
//! security, the vector index, and connecting.

#[path = "../common/mod.rs"]
mod common;

mod connect;
mod events;
mod history;
mod migrations;
mod poller;
mod queue;
mod rls;
mod search;
mod support;
