//! Link options of the `metaxy-sql` binary.
//!
//! - Position-dependent executable. The binary carries DataFusion, Delta Lake and three
//!   object-store clients: as a PIE its loader applies some 320,000 relocations at every start,
//!   faulting in 5 MB of relocated tables before `main` — about 7 ms of every statement's process
//!   (`metaxy-sql --version`: 10.3 ms, 3.2 ms without PIE, where `/bin/true` takes 2.4 ms;
//!   docs/benchmarks.md, fixed costs). Linked without PIE, the linker resolves them once.
//! - Release builds lay the functions a statement runs out together at the start of `.text`, in
//!   the order `src/bin/metaxy-sql.order` lists them (written by
//!   `tests/bench/order_functions.sh`). The binary has 140 MB of code and statements run ~13 MB
//!   of it; scattered, its first touches fault in ~950 separate 64 KiB windows of the file, and
//!   the process pays again to unmap them at exit. Names the build no longer has are skipped, so a
//!   stale list costs speed, never correctness. Needs LLD, rustc's default linker on
//!   x86_64-unknown-linux-gnu; a build that picks another linker (a configured `linker`, or
//!   `-C linker…` in its rustflags) is left as is.
fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    let linux_gnu = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    if linux_gnu {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let default_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("linker");
    if default_lld && var("PROFILE") == "release" {
        let order =
            std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("src/bin/metaxy-sql.order");
        println!(
            "cargo:rustc-link-arg-bin=metaxy-sql=-Wl,--symbol-ordering-file={}",
            order.display()
        );
        println!("cargo:rustc-link-arg-bin=metaxy-sql=-Wl,--no-warn-symbol-ordering");
        println!("cargo:rerun-if-changed=src/bin/metaxy-sql.order");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
