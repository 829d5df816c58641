//! The API over a real listening socket, with an HTTP client: routes, event streams,
//! tokens and tenants, the GitHub webhook. Projects are real git repositories synced
//! into real SQLite files.

mod api;
mod auth;
mod events;
mod feed;
mod page;
mod support;
mod webhook;
