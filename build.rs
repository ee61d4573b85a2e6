//! Link options of the `metaxy-sql` binary.
//!
//! - Linked as rustc links it by default: a position-independent executable, which the loader
//!   places at a random address (ASLR). The price is start-up time: the loader relocates the
//!   binary's pointer tables (`.data.rel.ro`, `.got`: DataFusion, Delta Lake and three
//!   object-store clients) at every start, copying each page it touches. Packing the
//!   relocations as `DT_RELR` shrinks their table but not that copy, and would require glibc
//!   2.36, so it is not done. `METAXY_LINK_NO_PIE=1` at build time links without PIE instead,
//!   for measurements of start-up that leave that cost out (docs/benchmarks.md).
//! - Function order, opt-in. The binary's code is large and a statement runs a small part of
//!   it, spread over the whole file: its first touches fault in many separate windows of the
//!   file, and the process pays again to unmap them at exit. Given a list of the functions
//!   statements run, LLD lays them out together at the start of `.text`
//!   (`--symbol-ordering-file`). The list is generated, never committed: its names carry the
//!   compiler's symbol hashes, which change with the compiler, the dependencies and the code,
//!   so a list from another build silently matches nothing. To use it:
//!
//!   ```sh
//!   tests/bench/order_functions.sh       # release build, callgrind; writes target/metaxy-sql.order
//!   METAXY_SYMBOL_ORDER=target/metaxy-sql.order cargo build --release
//!   ```
//!
//!   `METAXY_SYMBOL_ORDER` names the file (relative paths from the crate root); it applies to
//!   release builds with the default linker (below), and a build naming a missing file warns
//!   and links without it. Names the build no longer has are skipped, so a stale list costs
//!   speed, never correctness: regenerate it after changes to the code or the dependencies.
//!   The option is LLD's, rustc's default linker on x86_64-unknown-linux-gnu: a build that
//!   picks another linker (a configured `linker`, `-C linker…`, `-C link-arg=-fuse-ld=…`
//!   naming another one, or rustc's self-contained linker turned off, in its rustflags) is
//!   left as is.
use std::path::Path;

fn main() {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    // Opt-in only: a binary without PIE starts faster but loses address randomisation of its
    // own code.
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
    println!("cargo:rerun-if-env-changed=METAXY_SYMBOL_ORDER");
    let order = var("METAXY_SYMBOL_ORDER");
    if !order.is_empty() && var("PROFILE") == "release" {
        let order = Path::new(&var("CARGO_MANIFEST_DIR")).join(order);
        // Watched even while missing, so that generating it later relinks.
        println!("cargo:rerun-if-changed={}", order.display());
        if !default_lld {
            println!(
                "cargo:warning=METAXY_SYMBOL_ORDER ignored: the function order needs LLD, \
                 rustc's default linker on x86_64-unknown-linux-gnu"
            );
        } else if !order.is_file() {
            println!(
                "cargo:warning=METAXY_SYMBOL_ORDER names {}, which does not exist: linking \
                 without a function order (tests/bench/order_functions.sh writes it)",
                order.display()
            );
        } else {
            println!(
                "cargo:rustc-link-arg-bin=metaxy-sql=-Wl,--symbol-ordering-file={}",
                order.display()
            );
            println!("cargo:rustc-link-arg-bin=metaxy-sql=-Wl,--no-warn-symbol-ordering");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
