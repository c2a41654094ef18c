# Sourced by scripts/test: ensure_duckdb_python makes (once) a Python venv
# with DuckDB from PyPI under ${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan/ and
# exports PAHLAWAN_DUCKDB_PYTHON, for the test that reads the hub's Parquet
# export back the way a user would. (scripts/test has installed python3-venv.)

DUCKDB_VERSION=2.0.0

ensure_duckdb_python() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan/venv-duckdb"
    if ! "$venv/bin/python" -c "import duckdb, sys; sys.exit(duckdb.__version__ != '$DUCKDB_VERSION')" 2>/dev/null; then
        printf '\n==> %s\n' "installing DuckDB $DUCKDB_VERSION from PyPI into $venv" >&2
        python3 -m venv "$venv" || return 1
        "$venv/bin/pip" install -q "duckdb==$DUCKDB_VERSION" || return 1
    fi
    export PAHLAWAN_DUCKDB_PYTHON="$venv/bin/python"
}
