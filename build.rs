//! Links the `metaxy-sql` binary as a position-dependent executable.
//!
//! The binary carries DataFusion, Delta Lake and three object-store clients: as a PIE its loader
//! applies some 320,000 relocations at every start, faulting in 5 MB of relocated tables before
//! `main` — about 8 ms of every statement's process (`tests/bench/fixed_costs.sh`). Linked without
//! PIE the linker resolves them once, and a `metaxy-sql -c …` starts in about a millisecond.
fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
