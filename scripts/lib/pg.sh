# Sourced by scripts: start_postgres starts a throwaway PostgreSQL cluster on a
# random loopback port and exports DATABASE_URL; stop_postgres removes it.
# Needs Debian's postgresql package (initdb, pg_ctl under /usr/lib/postgresql).
# start_postgres installs its own EXIT/INT/TERM trap (stop_postgres), set
# before the cluster directory is made, so the directory never outlives the
# script, whatever step fails.

# The server binaries: PostgreSQL 15 (what the project targets) when
# installed, otherwise the highest version by numeric sort (so 15 beats 9.6).
pg_bin_dir() {
    local root=/usr/lib/postgresql
    if [ -x "$root/15/bin/initdb" ]; then
        echo "$root/15/bin"
        return 0
    fi
    local newest
    newest=$(for d in "$root"/*/bin/initdb; do
        [ -x "$d" ] && basename "$(dirname "$(dirname "$d")")"
    done | sort -V | tail -n 1)
    [ -n "$newest" ] || return 1
    echo "$root/$newest/bin"
}

start_postgres() {
    local bin pgdir port as=()
    bin=$(pg_bin_dir) || {
        echo "no PostgreSQL server under /usr/lib/postgresql/*/bin; install postgresql-15" >&2
        exit 1
    }
    # The trap is in place before mktemp: any exit from here on removes the
    # directory (stop_postgres is a no-op until PG_DIR is set).
    trap stop_postgres EXIT
    trap 'stop_postgres; trap - EXIT; exit 130' INT
    trap 'stop_postgres; trap - EXIT; exit 143' TERM
    PG_STOP=()
    pgdir=$(mktemp -d /tmp/pahlawan-test-pg.XXXXXX) || exit 1
    PG_DIR=$pgdir
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses root: run the cluster as the postgres system user.
        chown postgres:postgres "$pgdir" || exit 1
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -D "$pgdir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null || {
        echo "initdb failed" >&2
        exit 1
    }
    # From here a server may be running: stop it before removing its files.
    PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop)
    # A random free loopback port: retry if another process holds it.
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if "${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
            -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null; then
            break
        fi
        port=""
    done
    if [ -z "$port" ]; then
        cat "$pgdir/log" >&2 2>/dev/null || true
        echo "could not start PostgreSQL" >&2
        exit 1
    fi
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    printf "\n==> %s\n" "throwaway PostgreSQL on port $port ($pgdir)" >&2
}

stop_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        if [ -n "${PG_STOP+set}" ] && [ "${#PG_STOP[@]}" -gt 0 ]; then
            "${PG_STOP[@]}" >/dev/null 2>&1 || true
        fi
        rm -rf "$PG_DIR"
        PG_DIR=""
    fi
}
