//! Link options of the `metaxy-sql` binary.
//!
//! - Linked as rustc links it by default: a position-independent executable, which the loader
//!   places at a random address (ASLR). That has a start-up cost: the binary carries DataFusion,
//!   Delta Lake and three object-store clients, whose 5.5 MB of pointer tables (`.data.rel.ro`,
//!   `.got`) the loader relocates at every start, a copy of each page (dev build, `--version`:
//!   5.2–5.5 ms instead of 2.0–2.2 ms without PIE, 1,674 page faults instead of 273; packing
//!   the relocations as `DT_RELR` shrank their table from 8.8 MB to 88 KB but not the time, so
//!   it is not done; docs/benchmarks.md, fixed costs). `METAXY_LINK_NO_PIE=1` at build time
//!   links it without PIE instead, for measurements that want the start-up without that cost.
//! - Release builds lay the functions a statement runs out together at the start of `.text`, in
//!   the order `src/bin/metaxy-sql.order` lists them (written by
//!   `tests/bench/order_functions.sh`). The binary has 140 MB of code and statements run ~13 MB
//!   of it; scattered, its first touches fault in ~950 separate 64 KiB windows of the file, and
//!   the process pays again to unmap them at exit. Names the build no longer has are skipped, so a
//!   stale list costs speed, never correctness. The option is LLD's, rustc's default linker on
//!   x86_64-unknown-linux-gnu: a build that picks another linker (a configured `linker`,
//!   `-C linker…`, `-C link-arg=-fuse-ld=…` naming another one, or rustc's self-contained
//!   linker turned off, in its rustflags) is left as is.
fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    // Opt-in only: a binary without PIE starts ~3.5 ms faster (release, `--version`: 1.8–2.1
    // ms against 5.4–5.8 ms) but loses address randomisation of its own code.
    println!("cargo:rerun-if-env-changed=METAXY_LINK_NO_PIE");
    if var("METAXY_LINK_NO_PIE") == "1"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
    {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    let rustflags = var("CARGO_ENCODED_RUSTFLAGS");
    // `-fuse-ld=mold`, `-fuse-ld=bfd`, … (`lld` and `ld.lld` are LLD).
    let other_fuse_ld = rustflags.split('\x1f').any(|flag| {
        flag.split_once("fuse-ld=")
            .is_some_and(|(_, linker)| !linker.ends_with("lld"))
    });
    let default_lld = var("TARGET") == "x86_64-unknown-linux-gnu"
        && std::env::var_os("RUSTC_LINKER").is_none()
        && !rustflags.contains("linker")
        && !rustflags.contains("link-self-contained")
        && !other_fuse_ld;
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
