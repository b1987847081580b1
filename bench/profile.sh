#!/usr/bin/env bash
# Profile the gateway under one scenario with py-spy (installed into .venv if missing).
#
#   bench/profile.sh [SCENARIO] [more bench.run arguments]     default SCENARIO: publish
#   bench/profile.sh deliver_client_individual --quick
#
# Runs the scenario once against a fresh gateway with py-spy attached (250 samples/s,
# subprocesses included) and writes, under bench/results/:
#   profile-SCENARIO.svg  flamegraph (open in a browser; hover for numbers)
#   profile-SCENARIO.txt  top functions by self and by total samples (also printed)
#   profile-SCENARIO.raw  collapsed stacks (drop it on https://www.speedscope.app)
# py-spy needs ptrace rights on the gateway: root, or kernel.yama.ptrace_scope=0.
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
if [[ ! -x .venv/bin/py-spy ]]; then
    echo "== installing py-spy into .venv" >&2
    "$py" -m pip install -q --disable-pip-version-check py-spy
fi
scenario=${1:-publish}
shift || true
exec "$py" -m bench.run --targets gateway --scenario "$scenario" --repeats 1 --profile \
    --json "bench/results/profile-$scenario.json" "$@"
