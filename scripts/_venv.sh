# Sourced by scripts/test and scripts/run: create .venv with Python >= 3.11 if missing and
# install this package with the given extras; reinstall only when setup.cfg changes.
ensure_venv() {
    local extras="$1"
    local py="${PYTHON:-}"
    if [ -z "$py" ]; then
        for cand in python3.13 python3.12 python3.11 python3; do
            if command -v "$cand" >/dev/null 2>&1 \
                && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
                py="$cand"; break
            fi
        done
    fi
    if [ -z "$py" ]; then
        echo "error: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)" >&2
        return 1
    fi
    if [ ! -x .venv/bin/python ]; then
        echo "== creating .venv with $("$py" --version)"
        "$py" -m venv .venv
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate
    local stamp=".venv/.installed-${extras}-$(cat setup.cfg pyproject.toml | sha256sum | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        echo "== installing wa-actor-engine[${extras}] into .venv"
        python -m pip install --quiet --upgrade pip
        python -m pip install --quiet -e ".[${extras}]"
        rm -f .venv/.installed-"${extras}"-*
        touch "$stamp"
    fi
}
