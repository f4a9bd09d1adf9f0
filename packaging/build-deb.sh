#!/usr/bin/env bash
# Build the nymd .deb (nymd, nymctl, nym-tui, systemd units,
# sysusers/tmpfiles, /etc/nymd/nymd.toml, man pages, shell completions).
#
#   packaging/build-deb.sh                  release build -> target/debian/nymd_<version>-1_<arch>.deb
#   packaging/build-deb.sh --profile dev    package the debug binaries (fast; what CI does)
#   packaging/build-deb.sh --out DIR        write the .deb to DIR
#   packaging/build-deb.sh --no-build       package the binaries already in
#                                           target/<profile> (e.g. from `cargo
#                                           test`); builds only missing ones
#
# Installs cargo-deb with `cargo install cargo-deb --locked` if it is missing
# (version $CARGO_DEB_VERSION, default 3.8.0: later versions may refuse
# --profile dev). Prints the path of the .deb on its last line.
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//'; }

profile=release
out=
build=yes
while [ $# -gt 0 ]; do
    case "$1" in
        --profile) profile=${2:?--profile needs a value}; shift 2 ;;
        --out) out=${2:?--out needs a directory}; shift 2 ;;
        --no-build) build=no; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "build-deb.sh: unknown argument $1" >&2; usage >&2; exit 2 ;;
    esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

if ! cargo deb --version >/dev/null 2>&1; then
    echo "build-deb.sh: installing cargo-deb (cargo install cargo-deb --locked)" >&2
    nice cargo install cargo-deb --locked --version "${CARGO_DEB_VERSION:-3.8.0}"
fi

target_dir=$(cargo metadata --format-version 1 --no-deps --locked |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

case "$profile" in
    release) profile_dir=release ;;
    dev|test) profile_dir=debug ;;
    *) profile_dir=$profile ;;
esac
bin="$target_dir/$profile_dir"

bins=(nymd nymctl nym-tui)
# Each binary has the name of its package.
packages=()
for b in "${bins[@]}"; do
    if [ "$build" = yes ] || [ ! -x "$bin/$b" ]; then
        packages+=(-p "$b")
    fi
done
if [ ${#packages[@]} -gt 0 ]; then
    nice cargo build --locked --profile "$profile" --bins "${packages[@]}"
fi

# The sample config must be what `nymd print-default-config` prints.
if ! "$bin/nymd" print-default-config | cmp -s - systemd/nymd.toml; then
    echo "build-deb.sh: systemd/nymd.toml differs from 'nymd print-default-config'" >&2
    exit 1
fi

# Generated assets, where the asset list in daemon/Cargo.toml expects them.
gen="$bin/packaging"
rm -rf "$gen"
mkdir -p "$gen/man" "$gen/bash" "$gen/zsh" "$gen/fish"
for b in nymd nymctl; do
    "$bin/$b" man | gzip -9n > "$gen/man/$b.1.gz"
    "$bin/$b" completions bash > "$gen/bash/$b"
    "$bin/$b" completions zsh > "$gen/zsh/_$b"
    "$bin/$b" completions fish > "$gen/fish/$b.fish"
done

args=(-p nymd --no-build --locked --profile "$profile" --strip)
if [ "$profile" != release ]; then
    args+=(--fast)
fi
if [ -n "$out" ]; then
    mkdir -p "$out"
    args+=(--output "$out")
fi
deb=$(cargo deb "${args[@]}" | tail -n 1)
echo "$deb"
