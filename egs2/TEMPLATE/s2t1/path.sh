# Sourced by every recipe script: puts the project's virtualenv first and sets per-process thread counts.
MAIN_ROOT="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../../.." && pwd)"
export MAIN_ROOT
if [ -z "${VIRTUAL_ENV:-}" ] && [ -x "${MAIN_ROOT}/.venv/bin/python" ]; then
    export PATH="${MAIN_ROOT}/.venv/bin:${PATH}"
fi
export PYTHONUNBUFFERED=1
export HF_HUB_DISABLE_TELEMETRY=1
export LC_ALL=C.UTF-8
