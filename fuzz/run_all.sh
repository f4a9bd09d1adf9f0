#!/bin/sh
# Run each given fuzz target for $SECS seconds (default 60), one after the
# other, at low priority. Logs go to fuzz/logs/<target>.log; a summary line
# per target is printed.
set -u
cd "$(dirname "$0")"
SECS=${SECS:-60}
for t in "$@"; do
    mkdir -p "corpus/$t"
    nice -n 10 cargo +nightly fuzz run "$t" -- -max_total_time="$SECS" -rss_limit_mb=2048 \
        >"logs/$t.log" 2>&1
    rc=$?
    runs=$(grep -o 'Done [0-9]* runs' "logs/$t.log" | awk '{print $2}')
    echo "$t rc=$rc runs=${runs:-?} crash=$(grep -c 'Test unit written to' "logs/$t.log")"
done
