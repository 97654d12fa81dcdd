#!/usr/bin/env bash
# Builds what a release ships, into target/dist:
#
#   reuse-VERSION-x86_64-linux-gnu.tar.gz    bin/reuse (carries the glibc and the musl library),
#   reuse-VERSION-x86_64-linux-musl.tar.gz   lib/libreuse.so (of the archive's C library), the
#                                            man page, completions (bash, zsh, fish), licences;
#                                            the command is one static executable in both (it
#                                            needs no C library: it runs on any glibc, however
#                                            old, and on Alpine)
#   reuse-VERSION-aarch64-apple-darwin.tar.gz, reuse-VERSION-x86_64-apple-darwin.tar.gz
#                                            bin/reuse, lib/libreuse.dylib, the same documents
#   reuse-restart_VERSION_amd64.deb          /usr/bin/reuse, /usr/lib/x86_64-linux-gnu/libreuse.so,
#                                            the man page, completions, licences
#
#   dist/release.sh            everything
#   dist/release.sh linux      the Linux archives and the .deb only (no Zig needed)
#
# Needs what .ci/install installs: the rustup targets x86_64-unknown-linux-musl and
# *-apple-darwin, musl-tools, dpkg-deb; for macOS, Zig (PyPI's ziglang, found on PATH or in
# the project's venv) and cargo-zigbuild. Builds go to target/dist-build, apart from the
# workspace's own target/release.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
export REUSE_COMMIT="${REUSE_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}"
out=target/dist
work=target/dist-build
rm -rf "$out"
mkdir -p "$out" "$work"
say() { printf 'dist: %s\n' "$*" >&2; }

gnu=x86_64-unknown-linux-gnu
musl=x86_64-unknown-linux-musl

say "libraries for glibc and musl"
cargo build --release --locked -p reuse --target "$gnu" --target-dir "$work/lib"
cargo build --release --locked -p reuse --target "$musl" --target-dir "$work/lib"
export REUSE_EMBED_GNU="$PWD/$work/lib/$gnu/release/libreuse.so"
export REUSE_EMBED_MUSL="$PWD/$work/lib/$musl/release/libreuse.so"

say "the command, carrying both"
# A static musl command, so that no glibc is too old for it (a glibc build needs the glibc
# it was linked against, 2.34 and more on a current system) and Alpine needs no libgcc_s
# for it: +crt-static for the command
# (the library keeps -crt-static from .cargo/config.toml; it was built above). A target
# folder of its own, since other flags rebuild everything.
# The C compiler links it with Rust's own musl start files and libc.a (musl-gcc's specs would
# ask for musl's dynamic loader).
RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=cc \
  cargo build --release --locked -p reuse-cli --target "$musl" --target-dir "$work/cli-musl"

docs="$work/docs"
mkdir -p "$docs"
cli="$work/cli-musl/$musl/release/reuse"
"$cli" man >"$docs/reuse.1"
for sh in bash zsh fish; do
  "$cli" completions "$sh" >"$docs/reuse.$sh"
done

# stage NAME BIN LIB LIBNAME: a tree of bin/, lib/ and share/ under $work/stage/NAME.
stage() {
  local dir="$work/stage/$1"
  rm -rf "$dir"
  mkdir -p "$dir/bin" "$dir/lib" "$dir/share/man/man1" "$dir/share/bash-completion/completions" \
    "$dir/share/zsh/site-functions" "$dir/share/fish/vendor_completions.d" "$dir/share/doc/reuse"
  install -m 0755 "$2" "$dir/bin/reuse"
  install -m 0644 "$3" "$dir/lib/$4"
  install -m 0644 "$docs/reuse.1" "$dir/share/man/man1/reuse.1"
  install -m 0644 "$docs/reuse.bash" "$dir/share/bash-completion/completions/reuse"
  install -m 0644 "$docs/reuse.zsh" "$dir/share/zsh/site-functions/_reuse"
  install -m 0644 "$docs/reuse.fish" "$dir/share/fish/vendor_completions.d/reuse.fish"
  install -m 0644 README.md LICENSE-MIT LICENSE-APACHE "$dir/share/doc/reuse/"
  install -m 0644 LICENSE-MIT LICENSE-APACHE "$dir/"
}

# archive NAME: target/dist/reuse-VERSION-NAME.tar.gz, one top folder of the same name.
archive() {
  local top="reuse-$version-$1"
  rm -rf "$work/$top"
  cp -a "$work/stage/$1" "$work/$top"
  tar -C "$work" --owner=0 --group=0 --numeric-owner -czf "$out/$top.tar.gz" "$top"
  say "$out/$top.tar.gz"
}

stage x86_64-linux-gnu "$cli" "$REUSE_EMBED_GNU" libreuse.so
archive x86_64-linux-gnu
stage x86_64-linux-musl "$cli" "$REUSE_EMBED_MUSL" libreuse.so
archive x86_64-linux-musl

say "Debian package"
# Named reuse-restart: Debian's own `reuse` package is FSFE's licensing tool, which also
# installs /usr/bin/reuse; the two conflict, and dpkg says so.
deb="$work/deb"
rm -rf "$deb"
mkdir -p "$deb/DEBIAN" "$deb/usr/bin" "$deb/usr/lib/x86_64-linux-gnu" "$deb/usr/share/man/man1" \
  "$deb/usr/share/bash-completion/completions" "$deb/usr/share/zsh/vendor-completions" \
  "$deb/usr/share/fish/vendor_completions.d" "$deb/usr/share/doc/reuse-restart"
install -m 0755 "$cli" "$deb/usr/bin/reuse"
install -m 0644 "$REUSE_EMBED_GNU" "$deb/usr/lib/x86_64-linux-gnu/libreuse.so"
gzip -9n <"$docs/reuse.1" >"$deb/usr/share/man/man1/reuse.1.gz"
install -m 0644 "$docs/reuse.bash" "$deb/usr/share/bash-completion/completions/reuse"
install -m 0644 "$docs/reuse.zsh" "$deb/usr/share/zsh/vendor-completions/_reuse"
install -m 0644 "$docs/reuse.fish" "$deb/usr/share/fish/vendor_completions.d/reuse.fish"
{
  echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
  echo "Upstream-Name: reuse"
  echo
  echo "Files: *"
  echo "License: MIT or Apache-2.0"
  echo
  sed 's/^/ /; s/^ $/ ./' LICENSE-MIT
} >"$deb/usr/share/doc/reuse-restart/copyright"
size=$(du -sk "$deb/usr" | cut -f1)
cat >"$deb/DEBIAN/control" <<EOF
Package: reuse-restart
Version: $version
Architecture: amd64
Maintainer: The reuse developers <reuse@localhost>
Installed-Size: $size
Conflicts: reuse
Section: net
Priority: optional
Description: restart an unmodified server on its port at once
 reuse runs a server with libreuse.so preloaded, which sets SO_REUSEADDR (and,
 when asked, SO_REUSEPORT and SO_LINGER) on its listening sockets, so a server
 killed and started again binds its port at once instead of failing with
 EADDRINUSE. Hold mode keeps the listening socket across restarts.
 .
 Not FSFE's licensing tool, which Debian packages as "reuse" and which also
 installs /usr/bin/reuse.
EOF
dpkg-deb --root-owner-group -Zxz --build "$deb" "$out/reuse-restart_${version}_amd64.deb" >/dev/null
say "$out/reuse-restart_${version}_amd64.deb"

if [ "$what" = linux ]; then
  exit 0
fi

say "macOS, linked with Zig"
# Zig from PyPI: .ci/install puts the ziglang package in the project's venv (.venv).
if [ -z "${CARGO_ZIGBUILD_ZIG_PATH:-}" ] && ! command -v zig >/dev/null && [ -x .venv/bin/python3 ]; then
  CARGO_ZIGBUILD_ZIG_PATH=$(.venv/bin/python3 -c 'import os, ziglang; print(os.path.join(os.path.dirname(ziglang.__file__), "zig"))')
  export CARGO_ZIGBUILD_ZIG_PATH
fi
for target in aarch64-apple-darwin x86_64-apple-darwin; do
  rel="$work/mac/$target/release"
  rm -f "$rel/reuse" "$rel/libreuse.dylib"
  # Zig links Mach-O without Apple's SDK; its complaint that xcrun is missing is noise.
  cargo zigbuild --release --locked -p reuse -p reuse-cli --target "$target" --target-dir "$work/mac" 2>&1 |
    grep -v -e 'xcrun' -e 'the SDK is needed' -e 'pass the path of an Xcode' -e '^  |$' -e '^warning: invoking' >&2 || true
  [ -f "$rel/reuse" ] && [ -f "$rel/libreuse.dylib" ] || { say "the $target build failed"; exit 1; }
  name="${target%%-apple-darwin}-apple-darwin"
  stage "$name" "$rel/reuse" "$rel/libreuse.dylib" libreuse.dylib
  archive "$name"
done
