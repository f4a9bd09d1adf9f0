#!/usr/bin/env bash
# Does nymd stay inside its unit's SystemCallFilter=?
#
#   packaging/check-syscalls.sh NYMD NYMCTL UNIT
#
# Runs NYMD under strace on a temp state dir with the embedded local mixnet
# (start, identity "default" registered and connected, a metrics scrape,
# `nymctl list`, SIGHUP reload, SIGTERM), then checks every system call it
# made against the allow and deny lists of UNIT's SystemCallFilter= lines,
# expanded with `systemd-analyze syscall-filter`. Prints the calls that
# would be refused.
# Needs strace, python3, systemd-analyze.
set -euo pipefail

nymd=${1:?usage: check-syscalls.sh NYMD NYMCTL UNIT}
nymctl=${2:?usage: check-syscalls.sh NYMD NYMCTL UNIT}
unit=${3:?usage: check-syscalls.sh NYMD NYMCTL UNIT}

dir=$(mktemp -d /tmp/nymd-syscalls.XXXXXX)
pid=
nymd_pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -9 "$pid" ${nymd_pid:+"$nymd_pid"} 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/nymd.toml" <<EOF
[daemon]
state_dir = "$dir/state"
socket = "$dir/run/nymd.sock"
[identities]
first_port = $port
[metrics]
listen = "127.0.0.1:$mport"
[identities.traffic]
disable_cover_traffic = true
disable_delays = true
EOF

(umask 077 && exec strace -f -qq -o "$dir/trace" "$nymd" --config "$dir/nymd.toml" --localnet) \
    > "$dir/nymd.log" 2>&1 &
pid=$!

listed=no
for _ in $(seq 1 600); do
    if "$nymctl" --socket "$dir/run/nymd.sock" list 2>/dev/null | grep -q '^default *running'; then
        listed=yes
        break
    fi
    sleep 0.1
done
if [ "$listed" != yes ]; then
    echo "nymd did not come up under strace:" >&2
    cat "$dir/nymd.log" >&2
    exit 1
fi
# The metrics endpoint answers a scrape.
if ! python3 -c 'import sys, urllib.request; b = urllib.request.urlopen(sys.argv[1], timeout=20).read(); sys.exit(b"nymd_identities" not in b)' \
        "http://127.0.0.1:$mport/metrics"; then
    echo "nymd's metrics endpoint did not answer under strace" >&2
    exit 1
fi
# Signals go to nymd itself: strace blocks them for itself.
nymd_pid=$(cat "/proc/$pid/task/$pid/children" 2>/dev/null | awk '{print $1}')
if [ -z "$nymd_pid" ]; then
    echo "cannot find nymd's pid under strace ($pid)" >&2
    exit 1
fi
kill -HUP "$nymd_pid"
for _ in $(seq 1 100); do
    grep -q 'reloaded:' "$dir/nymd.log" && break
    sleep 0.1
done
"$nymctl" --socket "$dir/run/nymd.sock" list > /dev/null
kill -TERM "$nymd_pid"
for _ in $(seq 1 300); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
    echo "nymd did not stop on SIGTERM within 30 s" >&2
    exit 1
fi
# strace exits with the traced program's status: nymd must exit 0 on SIGTERM.
status=0
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ]; then
    echo "nymd exited with status $status under strace (expected 0 after SIGTERM):" >&2
    cat "$dir/nymd.log" >&2
    exit 1
fi
if ! grep -q 'reloaded:' "$dir/nymd.log"; then
    echo "nymd did not reload on SIGHUP:" >&2
    cat "$dir/nymd.log" >&2
    exit 1
fi

python3 - "$dir/trace" "$unit" <<'EOF'
import re, subprocess, sys

trace, unit = sys.argv[1], sys.argv[2]
used = set()
for line in open(trace, encoding="utf-8", errors="replace"):
    m = re.match(r"\d+\s+(?:<\.\.\. )?([a-z0-9_]+)[( ]", line)
    if m and not line.split(None, 1)[1].startswith(("+++", "---")):
        used.add(m.group(1))

groups, cur = {}, None
for line in subprocess.run(["systemd-analyze", "syscall-filter"],
                           capture_output=True, text=True, check=True).stdout.splitlines():
    if line.startswith("@"):
        cur = line.strip()
        groups[cur] = []
    elif cur and line.strip() and not line.strip().startswith("#"):
        groups[cur].append(line.strip())

def expand(names):
    out = set()
    for n in names:
        out |= expand(groups.get(n, [])) if n.startswith("@") else {n}
    return out

allow, deny = None, set()
for line in open(unit, encoding="utf-8"):
    line = line.strip()
    if not line.startswith("SystemCallFilter="):
        continue
    value = line.split("=", 1)[1]
    if value.startswith("~"):
        deny |= expand(value[1:].split())
    else:
        allow = (allow or set()) | expand(value.split())
if allow is None:
    print("no allow list in", unit)
    sys.exit(1)
permitted = allow - deny
refused = sorted(used - permitted)
print(f"     nymd made {len(used)} distinct system calls; refused by the filter: {refused or 'none'}")
sys.exit(1 if refused else 0)
EOF
