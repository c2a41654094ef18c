# Sourced by scripts (after scripts/lib/pg.sh, whose pg_bin_dir it uses).
#
# ensure_citus   builds Citus from third_party/citus/ once and installs it
#                into PostgreSQL's directories. The installed files are cached
#                outside the clone, in
#                ${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan/citus-<v>-pg<major>/,
#                keyed by the archive's and patch's SHA-256 and the server's
#                version; a stamp beside citus.so says what is installed, so a
#                second run neither rebuilds nor copies.
# start_citus    a throwaway cluster: a coordinator and two workers, each its
#                own PostgreSQL on a free loopback port, as the `postgres` user
#                when run as root; exports PAHLAWAN_CITUS_COORDINATOR (a URL)
#                and PAHLAWAN_CITUS_WORKERS (host:port,host:port).
# citus_database NAME
#                creates NAME on every node with the extension, adds the
#                workers from the coordinator, prints its URL (Citus's default
#                32 shards per table, as in production).
# stop_citus     stops the three servers and removes their files. start_citus
#                chains itself into the EXIT/INT/TERM traps (after whatever
#                trap is already set, e.g. stop_postgres), so the cluster never
#                outlives the script, whatever step fails.

CITUS_VERSION=13.2.2
CITUS_ARCHIVE=citus-$CITUS_VERSION.tar.gz
CITUS_PATCH=pg15.20-have_createdb_privilege.patch

citus_vendor_dir() {
    (cd "$(dirname "${BASH_SOURCE[0]}")/../../third_party/citus" && pwd)
}

citus_as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# The key of a build: what was built, from what, for which server.
citus_build_key() {
    local vendor=$1 pgc=$2
    {
        echo "citus $CITUS_VERSION"
        (cd "$vendor" && sha256sum "$CITUS_ARCHIVE" "$CITUS_PATCH")
        "$pgc" --version
    } | sha256sum | cut -d' ' -f1
}

citus_build_deps() {
    local major=$1 missing=()
    dpkg -s "postgresql-server-dev-$major" >/dev/null 2>&1 || missing+=("postgresql-server-dev-$major")
    dpkg -s liblz4-dev >/dev/null 2>&1 || missing+=(liblz4-dev)
    dpkg -s libzstd-dev >/dev/null 2>&1 || missing+=(libzstd-dev)
    dpkg -s libkrb5-dev >/dev/null 2>&1 || missing+=(libkrb5-dev)
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v cc >/dev/null 2>&1 || missing+=(build-essential)
    if [ "${#missing[@]}" -gt 0 ]; then
        printf '\n==> %s\n' "installing Citus build dependencies: ${missing[*]}" >&2
        citus_as_root apt-get update -qq
        DEBIAN_FRONTEND=noninteractive citus_as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
}

# Builds into "$cache/root" (a DESTDIR tree) and writes "$cache/key".
citus_build() {
    local vendor=$1 pgc=$2 cache=$3 key=$4 src started
    started=$(date +%s)
    src=$(mktemp -d /tmp/pahlawan-citus-build.XXXXXX) || return 1
    (
        set -e
        trap 'rm -rf "$src"' EXIT
        tar -xzf "$vendor/$CITUS_ARCHIVE" -C "$src"
        cd "$src"
        # PostgreSQL 15.20 and later export have_createdb_privilege(); the
        # patch drops Citus's static copy, which no longer compiles there.
        if grep -q 'have_createdb_privilege' "$("$pgc" --includedir-server)/commands/dbcommands.h"; then
            patch -p1 -s <"$vendor/$CITUS_PATCH"
        fi
        PG_CONFIG=$pgc ./configure --without-libcurl --quiet >/dev/null
        # No LLVM bitcode for JIT inlining: half the build time, same library.
        make -s -j"$(nproc)" with_llvm=no >/dev/null
        rm -rf "$cache.tmp"
        mkdir -p "$cache.tmp/root"
        make -s install with_llvm=no DESTDIR="$cache.tmp/root" >/dev/null
        echo "$key" >"$cache.tmp/key"
        rm -rf "$cache"
        mv "$cache.tmp" "$cache"
    ) || { rm -rf "$src" "$cache.tmp"; return 1; }
    printf '\n==> %s\n' "Citus $CITUS_VERSION built in $(($(date +%s) - started)) s (cached in $cache)" >&2
}

ensure_citus() {
    local bin pgc vendor major key cache stamp
    bin=$(pg_bin_dir) || { echo "no PostgreSQL server under /usr/lib/postgresql/*/bin" >&2; return 1; }
    pgc="$bin/pg_config"
    vendor=$(citus_vendor_dir) || { echo "third_party/citus is missing" >&2; return 1; }
    major=$("$pgc" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
    citus_build_deps "$major" || return 1
    key=$(citus_build_key "$vendor" "$pgc")
    stamp="$("$pgc" --pkglibdir)/citus.pahlawan-build"
    if [ -f "$("$pgc" --pkglibdir)/citus.so" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$key" ]; then
        return 0
    fi
    cache="${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan/citus-$CITUS_VERSION-pg$major"
    if [ "$(cat "$cache/key" 2>/dev/null)" != "$key" ]; then
        printf '\n==> %s\n' "building Citus $CITUS_VERSION for $("$pgc" --version) (once; about 5 minutes on 2 cores)" >&2
        mkdir -p "$(dirname "$cache")"
        citus_build "$vendor" "$pgc" "$cache" "$key" || { echo "building Citus failed" >&2; return 1; }
    fi
    printf '\n==> %s\n' "installing Citus $CITUS_VERSION from $cache" >&2
    citus_as_root cp -a "$cache/root/." / || return 1
    echo "$key" | citus_as_root tee "$stamp" >/dev/null
}

# One Citus node: initdb, the settings every node needs, start on a free port.
# Prints the port.
citus_start_node() {
    local bin=$1 dir=$2 port
    "${CITUS_AS[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres -E UTF8 --no-sync >/dev/null || return 1
    cat >>"$dir/data/postgresql.conf" <<'EOF'
shared_preload_libraries = 'citus'
listen_addresses = '127.0.0.1'
max_connections = 300
max_prepared_transactions = 300
# One Citus maintenance daemon per database with the extension.
max_worker_processes = 64
fsync = on
# After a node is killed, its in-doubt prepared transactions (which hold row
# locks) are resolved within a second, not a minute.
citus.recover_2pc_interval = '1s'
EOF
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        if "${CITUS_AS[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
            -o "-p $port -k $dir" start >/dev/null; then
            echo "$port"
            return 0
        fi
    done
    cat "$dir/log" >&2 2>/dev/null || true
    return 1
}

start_citus() {
    local bin root name port ports=() prev
    bin=$(pg_bin_dir) || return 1
    prev=$(trap -p EXIT | sed -E "s/^trap -- '(.*)' EXIT$/\1/")
    # shellcheck disable=SC2064 # the previous trap is expanded now, on purpose
    trap "stop_citus; ${prev:-:}" EXIT
    trap 'stop_citus; trap - EXIT; exit 130' INT
    trap 'stop_citus; trap - EXIT; exit 143' TERM
    CITUS_AS=()
    CITUS_STOP=()
    CITUS_BIN=$bin
    root=$(mktemp -d /tmp/pahlawan-test-citus.XXXXXX) || return 1
    CITUS_DIR=$root
    if [ "$(id -u)" -eq 0 ]; then
        chown postgres:postgres "$root" || return 1
        CITUS_AS=(runuser -u postgres --)
    fi
    for name in coordinator worker1 worker2; do
        "${CITUS_AS[@]}" mkdir "$root/$name" || return 1
        CITUS_STOP+=("$root/$name/data")
        port=$(citus_start_node "$bin" "$root/$name") || { echo "could not start Citus $name" >&2; return 1; }
        ports+=("$port")
    done
    export PAHLAWAN_CITUS_COORDINATOR="postgres://postgres@127.0.0.1:${ports[0]}/postgres"
    export PAHLAWAN_CITUS_WORKERS="127.0.0.1:${ports[1]},127.0.0.1:${ports[2]}"
    printf '\n==> %s\n' "throwaway Citus cluster: coordinator on ${ports[0]}, workers on ${ports[1]} and ${ports[2]} ($root)" >&2
}

stop_citus() {
    local data
    if [ -n "${CITUS_DIR:-}" ]; then
        for data in "${CITUS_STOP[@]}"; do
            "${CITUS_AS[@]}" "$CITUS_BIN/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
        done
        rm -rf "$CITUS_DIR"
        CITUS_DIR=""
    fi
}

citus_database() {
    local name=$1 bin psql port c w
    bin=$CITUS_BIN
    c=${PAHLAWAN_CITUS_COORDINATOR##*:}
    c=${c%%/*}
    for port in "$c" $(echo "$PAHLAWAN_CITUS_WORKERS" | tr ',' ' ' | sed -E 's/[^ ]*://g'); do
        psql=("$bin/psql" -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres)
        "${psql[@]}" -d postgres -c "CREATE DATABASE $name" >/dev/null || return 1
        "${psql[@]}" -d "$name" -c "CREATE EXTENSION citus" >/dev/null || return 1
    done
    psql=("$bin/psql" -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$c" -U postgres -d "$name")
    "${psql[@]}" -c "SELECT citus_set_coordinator_host('127.0.0.1', $c)" >/dev/null || return 1
    for w in $(echo "$PAHLAWAN_CITUS_WORKERS" | tr ',' ' '); do
        "${psql[@]}" -c "SELECT citus_add_node('${w%:*}', ${w##*:})" >/dev/null || return 1
    done
    echo "postgres://postgres@127.0.0.1:$c/$name"
}
