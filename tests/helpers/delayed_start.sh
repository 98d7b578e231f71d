#!/bin/sh
# A parallel command for tests (oracle.overrides.parallel_cmd: "delayed_start.sh FLAG SECONDS"):
# while the file FLAG exists, wait SECONDS before running the DFT binary, so that a test can
# cancel the job, or let it pass its wall time, while its Firework is RUNNING.
flag=$1
seconds=$2
shift 2
if [ -e "$flag" ]; then sleep "$seconds"; fi
exec "$@"
