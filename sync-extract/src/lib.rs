#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod cdc;
mod grammars;
mod hash;
mod language;
mod markdown;
mod pack;
mod syntax;

pub use cdc::CdcLineChunker;
pub use language::Language;
pub use syntax::SyntaxChunker;
