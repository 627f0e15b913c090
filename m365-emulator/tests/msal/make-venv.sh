#!/usr/bin/env bash
# Creates, or brings up to date, the Python virtual environment the MSAL-for-Python tests run
# in, with the packages pinned in requirements.txt beside this script. Idempotent: a venv whose
# stamp equals the requirements is left as it is.
# Usage: make-venv.sh VENV_DIR   (PYTHON names the interpreter, python3 by default)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:?usage: make-venv.sh VENV_DIR}"
python="${PYTHON:-python3}"
if [ -x "$venv/bin/python" ] && cmp -s "$here/requirements.txt" "$venv/.requirements"; then
    exit 0
fi
"$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt"
cp "$here/requirements.txt" "$venv/.requirements"
