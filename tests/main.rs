//! All integration tests, in one binary (each test binary links DataFusion again): one module
//! per topic, the big ones split into submodules, shared helpers in `common`.

mod cli;
mod cluster_security;
mod common;
mod distributed;
mod embedded;
mod faults;
mod file_access;
mod flight_sql;
mod fuzz;
mod graph;
mod hash;
mod metaxy_commands;
mod repl;
mod resolve;
mod slt;
mod store;
