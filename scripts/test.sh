#!/usr/bin/env bash
# Runs the whole test suite in its own virtual environment (created and installed on first use).
# Tests that need ../shared/data skip with a reason when it is absent. Extra arguments go to pytest.
source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
exec python -m pytest "$@"
