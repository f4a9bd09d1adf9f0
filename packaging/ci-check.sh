#!/usr/bin/env bash
# CI check of the .deb and the systemd units, called by .ci/run:
#
#   packaging/ci-check.sh            packages the debug binaries (fast: reuses
#                                    the test build; run it after `cargo test`);
#                                    NYMD_DEB_PROFILE=release packages release
#                                    binaries instead (about 9 minutes of
#                                    release build on 2 cores)
#
# 1. builds the .deb (packaging/build-deb.sh) and checks its file list,
#    modes, conffiles and maintainer scripts;
# 2. installs it with `dpkg -i` into a scratch root (dpkg --root, maintainer
#    scripts run chrootless with DPKG_ROOT: they create the nymd user and
#    /var/lib/nymd in the scratch root, and touch no running systemd), runs
#    nymd --version and nymctl --version from it, and checks the user, the
#    state dir mode and the sample config;
# 3. `systemd-analyze verify` on the installed system and user units (their
#    binary and man pages mapped into the scratch root);
# 4. `systemd-analyze security --offline=yes`: exposure of nymd.service must
#    be <= 2.0;
# 5. if strace is installed: every system call nymd makes (start, embedded
#    localnet, identity, reload, stop) is allowed by the unit's
#    SystemCallFilter= (a filtered call would fail with EPERM);
# 6. removes and purges the package: keys (/var/lib/nymd) stay.
#
# Needs dpkg and systemd-analyze (Debian package `systemd`); runs as any
# user that can write to /tmp. Ends with "N passed, M failed".
set -uo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
profile=${NYMD_DEB_PROFILE:-dev}
work=$(mktemp -d /tmp/nymd-ci-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   - $*"; }
bad() { failed=$((failed + 1)); echo "FAIL - $*"; }
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@"; then ok "$what"; else bad "$what"; fi
}
finish() {
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit $?
}

for tool in dpkg dpkg-deb systemd-analyze python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
        bad "$tool is installed (apt-get install -y dpkg systemd python3)"
        finish
    fi
done

# 1. Build.
start=$(date +%s)
# --no-build: package what .ci/run's `cargo test` built (a plain `cargo
# build` would rebuild tokio and everything above it without the dev-only
# features that the test build unified in).
deb=$(packaging/build-deb.sh --profile "$profile" --no-build --out "$work/out" | tail -n 1)
if [ ! -f "$deb" ]; then
    bad "build the .deb (packaging/build-deb.sh --profile $profile)"
    finish
fi
ok "built $(basename "$deb") (profile $profile) in $(( $(date +%s) - start )) s"

expected="$work/expected"
{
    cat <<'EOF'
-rw-r--r-- ./etc/nymd/nymd.toml
-rwxr-xr-x ./usr/bin/nymctl
-rwxr-xr-x ./usr/bin/nymd
-rw-r--r-- ./usr/lib/systemd/system/nymd.service
-rw-r--r-- ./usr/lib/systemd/user/nymd.service
-rw-r--r-- ./usr/lib/sysusers.d/nymd.conf
-rw-r--r-- ./usr/lib/tmpfiles.d/nymd.conf
-rw-r--r-- ./usr/share/bash-completion/completions/nymctl
-rw-r--r-- ./usr/share/bash-completion/completions/nymd
-rw-r--r-- ./usr/share/doc/nymd/README.md
-rw-r--r-- ./usr/share/doc/nymd/copyright
-rw-r--r-- ./usr/share/fish/vendor_completions.d/nymctl.fish
-rw-r--r-- ./usr/share/fish/vendor_completions.d/nymd.fish
-rw-r--r-- ./usr/share/man/man1/nymctl.1.gz
-rw-r--r-- ./usr/share/man/man1/nymd.1.gz
-rw-r--r-- ./usr/share/zsh/vendor-completions/_nymctl
-rw-r--r-- ./usr/share/zsh/vendor-completions/_nymd
-rwxr-xr-x ./usr/bin/nym-tui
EOF
} | LC_ALL=C sort -k2 > "$expected"
dpkg-deb -c "$deb" | awk '$1 !~ /^d/ {print $1, $6}' | LC_ALL=C sort -k2 > "$work/actual"
if diff -u "$expected" "$work/actual"; then
    ok "file list and modes ($(wc -l < "$expected") files)"
else
    bad "file list and modes (diff above: expected vs .deb)"
fi
check "conffiles: /etc/nymd/nymd.toml" \
    sh -c "dpkg-deb -I '$deb' conffiles | grep -qx /etc/nymd/nymd.toml"
for s in postinst prerm postrm; do
    check "maintainer script $s" sh -c "dpkg-deb -I '$deb' $s | head -n 1 | grep -q '^#!/bin/sh'"
done

# 2. Install into a scratch root.
root="$work/root"
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/etc"
touch "$root/var/lib/dpkg/status" "$root/var/lib/dpkg/available"
dpkg_root() {
    # Dependencies (libc6) live outside the scratch root; scripts run
    # without chroot, with DPKG_ROOT set.
    dpkg --root="$root" --force-script-chrootless --force-depends --force-not-root "$@"
}
if dpkg_root -i "$deb" > "$work/dpkg-install.log" 2>&1; then
    ok "dpkg -i into a scratch root"
else
    cat "$work/dpkg-install.log"
    bad "dpkg -i into a scratch root"
    finish
fi
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
version_is() { # BINARY: runs it from the scratch root
    local said
    said=$("$root/usr/bin/$1" --version 2>&1) || true
    echo "     $said"
    [ "$said" = "$1 $upstream" ]
}
check "nymd --version from the package" version_is nymd
check "nymctl --version from the package" version_is nymctl
check "nym-tui --version from the package" version_is nym-tui
check "postinst created user and group nymd (sysusers.d)" \
    sh -c "grep -q '^nymd:.*:/var/lib/nymd:/usr/sbin/nologin$' '$root/etc/passwd' && grep -q '^nymd:' '$root/etc/group'"
nymd_uid=$(awk -F: '$1 == "nymd" {print $3}' "$root/etc/passwd")
check "postinst created /var/lib/nymd 0700 owned by nymd (tmpfiles.d)" \
    sh -c "[ \"\$(stat -c '%a %u' '$root/var/lib/nymd')\" = '700 $nymd_uid' ]"
check "/etc/nymd/nymd.toml is what 'nymd print-default-config' prints" \
    sh -c "'$root/usr/bin/nymd' print-default-config | cmp -s - '$root/etc/nymd/nymd.toml'"

# 3. systemd-analyze verify, with /usr/bin/nymd and the man pages taken
#    from the scratch root (systemd is not PID 1 in CI).
units="$work/units"
mkdir -p "$units/user"
sed "s|/usr/bin/nymd|$root/usr/bin/nymd|g" "$root/usr/lib/systemd/system/nymd.service" > "$units/nymd.service"
sed "s|/usr/bin/nymd|$root/usr/bin/nymd|g" "$root/usr/lib/systemd/user/nymd.service" > "$units/user/nymd.service"
man_opt=()
if ! command -v man >/dev/null 2>&1; then
    man_opt=(--man=no)
fi
check "systemd-analyze verify nymd.service" \
    env MANPATH="$root/usr/share/man" systemd-analyze verify "${man_opt[@]}" "$units/nymd.service"
runtime="$work/xdg-runtime"
mkdir -m 0700 -p "$runtime"
check "systemd-analyze --user verify user/nymd.service" \
    env MANPATH="$root/usr/share/man" XDG_RUNTIME_DIR="$runtime" \
    systemd-analyze --user verify "${man_opt[@]}" "$units/user/nymd.service"

# 4. Exposure (the value is 0.0-10.0; --threshold takes it times ten).
systemd-analyze security --offline=yes "$units/nymd.service" > "$work/security.txt" 2>&1
exposure=$(grep -o 'Overall exposure level for nymd.service: [0-9.]*' "$work/security.txt" | awk '{print $NF}')
echo "     systemd-analyze security: ${exposure:-?} (threshold 2.0)"
check "systemd-analyze security --offline=yes nymd.service: ${exposure:-?} <= 2.0" \
    sh -c "systemd-analyze security --offline=yes --threshold=20 '$units/nymd.service' >/dev/null 2>&1"

# 5. System calls versus SystemCallFilter=.
if command -v strace >/dev/null 2>&1; then
    check "every system call nymd makes passes nymd.service's SystemCallFilter=" \
        packaging/check-syscalls.sh "$root/usr/bin/nymd" "$root/usr/bin/nymctl" "$units/nymd.service"
elif [ -n "${CI:-}" ]; then
    check "strace is installed (CI must check system calls, not skip them)" false
else
    echo "skip - system calls versus SystemCallFilter= (strace is not installed)"
fi

# 6. Remove and purge.
check "dpkg -r: binaries gone, config and keys dir kept" sh -c "
    dpkg --root='$root' --force-script-chrootless --force-depends --force-not-root -r nymd >/dev/null 2>&1 &&
    [ ! -e '$root/usr/bin/nymd' ] && [ -f '$root/etc/nymd/nymd.toml' ] && [ -d '$root/var/lib/nymd' ]"
check "dpkg -P: config gone, keys dir kept" sh -c "
    dpkg --root='$root' --force-script-chrootless --force-depends --force-not-root -P nymd >/dev/null 2>&1 &&
    [ ! -e '$root/etc/nymd/nymd.toml' ] && [ -d '$root/var/lib/nymd' ]"

finish
