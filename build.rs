//! How the shipped binary is linked, beyond what rustc does by default.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let target = |key: &str| std::env::var(key).unwrap_or_default();
    // Relative relocations packed (DT_RELR, glibc 2.36 and binutils 2.38 or newer; Debian 12's
    // and the Dockerfile's): a position-independent binary otherwise carries one 24-byte entry
    // per pointer to relocate at start-up, 12,700 of them (300 KB), all read by the loader and
    // then resident for the life of the process. Packed, they take 3.5 KB: about 0.5 MiB less
    // resident memory, ASLR kept (bench/README.md, "Where the memory and the gRPC CPU went").
    if target("CARGO_CFG_TARGET_OS") == "linux" && target("CARGO_CFG_TARGET_ENV") == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}
