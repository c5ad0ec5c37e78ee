#!/usr/bin/env bash
# Entry of `./run.sh --rehearsal true`: the recipe's Python environment, then local/rehearsal.py (options: its --help).
set -euo pipefail
cd "$(dirname "$0")/.."
. ./path.sh
exec python3 local/rehearsal.py "$@"
