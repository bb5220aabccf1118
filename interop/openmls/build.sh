#!/usr/bin/env bash
# Builds the OpenMLS interop driver and prints the path of the binary on
# stdout (cargo's progress goes to stderr).
#
#   interop/openmls/build.sh
#
# The target directory lives outside the repository so that repeated runs
# on the same machine reuse it: a cold build compiles about 280 crates and
# takes many minutes on two cores, a warm one only relinks.
#
# Environment: MLSAS_OPENMLS_TARGET overrides the target directory
# (default ${XDG_CACHE_HOME:-$HOME/.cache}/mls-appservice/openmls-target);
# MLSAS_CARGO_JOBS the number of parallel jobs (default 2).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TARGET=${MLSAS_OPENMLS_TARGET:-${XDG_CACHE_HOME:-$HOME/.cache}/mls-appservice/openmls-target}
export PATH=$HOME/.cargo/bin:$PATH

command -v cargo >/dev/null || { echo "build.sh: cargo not found (install Rust: https://rustup.rs)" >&2; exit 1; }
mkdir -p "$TARGET"
cargo build --release --locked -j "${MLSAS_CARGO_JOBS:-2}" \
	--manifest-path "$HERE/Cargo.toml" --target-dir "$TARGET" >&2
echo "$TARGET/release/openmls-interop-driver"
