#!/usr/bin/env bash
# Installs the plugin the way an ESPnet user would: into an environment that already holds ESPnet and torch,
# with plain `pip install -e .` (setup.py's ranges, no constraints file), then checks that pip kept their ESPnet
# and torch, that `pip check` is clean, and that the model tests pass there. Usage: .ci/existing_espnet.sh [VENV]
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-$(mktemp -d)/venv-espnet}"
python="$(command -v python3.11 || command -v python3)"

echo "== an ESPnet environment: espnet 202506 + torch 2.11.0 in ${venv}"
"${python}" -m venv "${venv}"
"${venv}/bin/pip" install -q "uv==0.13.9"
"${venv}/bin/uv" pip install -q --python "${venv}/bin/python" "espnet==202506" "torch==2.11.0" "torchaudio==2.11.0"
before=$("${venv}/bin/pip" freeze | grep -i -E "^(espnet|torch|torchaudio|numpy)==" | sort)

echo "== pip install -e . into it"
"${venv}/bin/pip" install -q -e . "pytest>=8,<10" "pytest-timeout>=2.3"
after=$("${venv}/bin/pip" freeze | grep -i -E "^(espnet|torch|torchaudio|numpy)==" | sort)
if [ "${before}" != "${after}" ]; then
    echo "pip install -e . changed the user's ESPnet stack:"; diff <(echo "${before}") <(echo "${after}") || true
    exit 1
fi
"${venv}/bin/pip" check
echo "== model and task tests in that environment"
OMP_NUM_THREADS=1 "${venv}/bin/python" -m pytest -q tests/test_model.py tests/test_train.py
rm -rf "${venv}"
echo "== installs into an existing ESPnet environment: ok"
