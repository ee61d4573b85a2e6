//! Links the `metaxy-sql` binary as a position-dependent executable.
//!
//! The binary carries DataFusion, Delta Lake and three object-store clients: as a PIE its loader
//! applies some 320,000 relocations at every start, faulting in 5 MB of relocated tables before
//! `main` — about 7 ms of every statement's process (`metaxy-sql --version`: 10.3 ms, 3.2 ms
//! without PIE, where `/bin/true` takes 2.4 ms; docs/benchmarks.md, fixed costs). Linked
//! without PIE, the linker resolves them once.
fn main() {
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu");
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
