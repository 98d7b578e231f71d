#!/bin/sh
# A parallel command for tests (oracle.overrides.parallel_cmd: "delayed_start.sh FLAG SECONDS"):
# while the file FLAG exists, wait (up to SECONDS) before running the DFT binary, so that a test
# can cancel the job, or kill its launcher, while its Firework is RUNNING. Removing FLAG lets
# every waiting run go on within a second (none is left sleeping behind a test).
flag=$1
seconds=$2
shift 2
waited=0
while [ -e "$flag" ] && [ "$waited" -lt "$seconds" ]; do
    sleep 1
    waited=$((waited + 1))
done
exec "$@"
