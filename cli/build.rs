//! The command carries the library inside itself, so that `cargo install --path cli` alone
//! gives a working `reuse` (as mirrord's command carries its layer).
//!
//! For each C library (glibc, musl) the embedded `libreuse.so` is, in order: the file named
//! by REUSE_EMBED_GNU or REUSE_EMBED_MUSL (what the release script passes, built for every
//! target it ships); else, for the command's own Linux target only, the library built here
//! by a cargo of its own in a target folder of its own (the outer build holds the lock of
//! the main one); else nothing (the command then uses a library found on disk). The
//! version and the commit go into `reuse --version`.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "../build_commit.rs"]
mod build_commit;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let repo = manifest.parent().expect("the repository").to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../build_commit.rs");
    println!(
        "cargo:rustc-env=REUSE_COMMIT={}",
        build_commit::commit(&repo)
    );

    let os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    for flavor in ["gnu", "musl"] {
        let var = format!("REUSE_EMBED_{}", flavor.to_uppercase());
        println!("cargo:rerun-if-env-changed={var}");
        let dest = out.join(format!("libreuse-{flavor}.so"));
        let given = env::var_os(&var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from);
        let lib = match given {
            Some(p) => Some(p),
            None if os == "linux" && target_env == flavor => build_library(&repo, &out, &target),
            None => None,
        };
        match lib {
            Some(p) => {
                std::fs::copy(&p, &dest).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                println!("cargo:rerun-if-changed={}", p.display());
            }
            None => {
                std::fs::write(&dest, b"").expect("OUT_DIR");
            }
        }
        println!(
            "cargo:rustc-env=REUSE_EMBEDDED_{}={}",
            flavor.to_uppercase(),
            dest.display()
        );
    }
}

/// Builds the library for `target` with cargo, in `out`/library; its path, or None (with a
/// warning) if the build failed: the command then works with a library found on disk.
fn build_library(repo: &Path, out: &Path, target: &str) -> Option<PathBuf> {
    for dir in [
        "src",
        "core/src",
        "build.rs",
        "Cargo.toml",
        "Cargo.lock",
        ".cargo",
    ] {
        println!("cargo:rerun-if-changed={}", repo.join(dir).display());
    }
    let target_dir = out.join("library");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(repo)
        .args([
            "build",
            "--release",
            "--package",
            "reuse",
            "--target",
            target,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--manifest-path")
        .arg(repo.join("Cargo.toml"));
    // The library's own flags (.cargo/config.toml: -crt-static for musl), not the command's
    // (a static musl command is built with +crt-static, which makes no shared library).
    // Nor what runs the command's build through clippy.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CLIPPY_ARGS",
        "CLIPPY_CONF_DIR",
    ] {
        c.env_remove(var);
    }
    for (k, _) in env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        if k.starts_with("CARGO_TARGET_") && k.ends_with("_RUSTFLAGS") {
            c.env_remove(k);
        }
    }
    match c.status() {
        Ok(s) if s.success() => {
            let lib = target_dir.join(target).join("release").join("libreuse.so");
            lib.is_file().then_some(lib)
        }
        other => {
            println!(
                "cargo:warning=building libreuse.so for {target} to embed failed ({other:?}); this reuse will need the library on disk (REUSE_LIB, or beside it)"
            );
            None
        }
    }
}
