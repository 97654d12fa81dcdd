// The commit a build comes from, for `reuse --version` and the library's version mark:
// REUSE_COMMIT if set (a release script, a tarball without .git), else `git rev-parse` of the
// checkout, else "unknown". Shared by build.rs and cli/build.rs.

use std::path::Path;
use std::process::Command;

pub fn commit(repo: &Path) -> String {
    println!("cargo:rerun-if-env-changed=REUSE_COMMIT");
    if let Ok(c) = std::env::var("REUSE_COMMIT") {
        if !c.is_empty() {
            return c;
        }
    }
    let git = repo.join(".git");
    if git.is_dir() {
        // A commit rewrites the branch's ref file, not HEAD: watch both.
        let head = git.join("HEAD");
        println!("cargo:rerun-if-changed={}", head.display());
        println!(
            "cargo:rerun-if-changed={}",
            git.join("packed-refs").display()
        );
        if let Some(r) = std::fs::read_to_string(&head)
            .ok()
            .and_then(|h| h.strip_prefix("ref: ").map(|r| r.trim().to_string()))
        {
            println!("cargo:rerun-if-changed={}", git.join(r).display());
        }
    }
    Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
