//! A small scalar reverse-mode autograd engine ([`Graph`]) and the bit of JSON ([`json`]) its
//! refgrad adapter (`src/bin/adapter.rs`) needs. Standard library only.

mod engine;
pub mod json;

pub use engine::{Graph, NodeId, Op};
