//! In-memory reference implementations of the two traits.

mod source;
mod store;

pub use source::{MemoryFile, MemorySource};
pub use store::MemoryStore;
