//! All integration tests, in one binary (each test binary links DataFusion again).

mod cli;
mod distributed;
mod common;
mod faults;
mod fuzz;
mod graph;
mod hash;
mod repl;
mod resolve;
mod slt;
mod store;
