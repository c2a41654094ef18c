# Sourced by scripts: start_postgres starts a throwaway PostgreSQL cluster on a
# random loopback port and exports DATABASE_URL; stop_postgres removes it.
# Needs Debian's postgresql package (initdb, pg_ctl under /usr/lib/postgresql).
start_postgres() {
    local bin pgdir port as=()
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    pgdir=$(mktemp -d /tmp/pahlawan-test-pg.XXXXXX)
    if [ "$(id -u)" -eq 0 ]; then
        # initdb refuses root: run the cluster as the postgres system user.
        chown postgres:postgres "$pgdir"
        as=(runuser -u postgres --)
    fi
    "${as[@]}" "$bin/initdb" -D "$pgdir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null
    # A random free loopback port: retry if another process holds it.
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if "${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
            -o "-p $port -k $pgdir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null; then
            break
        fi
        port=""
    done
    [ -n "$port" ] || { cat "$pgdir/log" >&2; echo "could not start PostgreSQL" >&2; exit 1; }
    PG_STOP=("${as[@]}" "$bin/pg_ctl" -D "$pgdir/data" -m immediate stop)
    PG_DIR=$pgdir
    export DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
    log "throwaway PostgreSQL on port $port ($pgdir)"
}
stop_postgres() {
    if [ -n "${PG_DIR:-}" ]; then
        "${PG_STOP[@]}" >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
}
