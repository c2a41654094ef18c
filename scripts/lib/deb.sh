# Sourced by scripts/test, after scripts/lib/box.sh: check_deb builds the
# edge box's Debian package and proves it on this machine (CI's machines are
# throwaway and run as root; elsewhere it needs passwordless sudo, and under
# CI=true a missing one fails, never skips):
#
#   1. cargo-deb $CARGO_DEB_VERSION (installed once, with cargo install);
#      the box binary (build_box: stripped, fat LTO, cached outside the
#      clone); `cargo deb --no-build` packages that very binary, twice:
#      revision 1, and revision 2 as "the newer build" (same binary, higher
#      Debian version: dpkg upgrades exactly as it would to a new release).
#   2. Purges any earlier install, `dpkg -i` revision 1, then checks: the
#      files, their owners and modes, the conffile, the pahlawan system
#      user, the keys postinst made (0600, the user's), `systemd-analyze
#      verify` on the installed unit; runs the installed edge as the user
#      with the installed configuration until /readyz answers 200, posts a
#      provider and a surplus through the API, stops it (SIGTERM, clean).
#   3. Edits the conffile, upgrades to revision 2 (non-interactive, keeping
#      the edit), checks the version moved and the edit, the keys, the
#      database and the uid stayed; the edge starts again and still has the
#      surplus.
#   4. `dpkg -r`: configuration and data kept; `dpkg --purge`: both gone,
#      the user kept (as deploy/README.md says), then the check removes the
#      user itself.
#
# It purges whatever `pahlawan` package is installed first: run it on a
# throwaway machine (CI's), never on a real edge box.
#
# Every check prints what it checked; the first that does not hold prints
# one line ("deb: FAILED: …") and fails the run. The package is purged and
# the user removed at the end, also when a check fails (a trap in check_deb's
# own subshell: the caller's EXIT trap is left alone). Bounded: seconds once
# the box binary and cargo-deb are cached.

CARGO_DEB_VERSION=3.8.0
DEB_NAME=pahlawan
DEB_USER=pahlawan
DEB_UNIT=pahlawan-edge.service
DEB_CONF=/etc/pahlawan/edge.toml
DEB_DATA=/var/lib/pahlawan
DEB_KEYS=(jwt-signing.pem jwks.json pii-keys.json web-push-vapid.pem)
DEB_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

deb_ok() { printf 'deb: ok: %s\n' "$*" >&2; }
deb_fail() {
    printf 'deb: FAILED: %s\n' "$*" >&2
    exit 1
}

# Root's commands: directly as root, else through sudo (non-interactive).
DEB_ROOT=()
deb_root() { "${DEB_ROOT[@]}" "$@"; }

# A command as the service user, from / with the unit's umask.
deb_as_user() (
    cd / && umask 077 &&
        exec "${DEB_ROOT[@]}" setpriv --reuid="$DEB_USER" --regid="$DEB_USER" --init-groups "$@"
)

# deb_check WHAT COMMAND...: COMMAND succeeds, or WHAT failed (with its output).
deb_check() {
    local what=$1 out
    shift
    if out=$("$@" 2>&1); then
        deb_ok "$what"
    else
        [ -z "$out" ] || printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        deb_fail "$what"
    fi
}

# deb_dpkg WHAT ARGS...: dpkg ARGS as root, non-interactive; its output
# (the maintainer scripts' lines among it) shown indented.
deb_dpkg() {
    local what=$1 out
    shift
    if out=$(deb_root env DEBIAN_FRONTEND=noninteractive dpkg "$@" 2>&1); then
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/    /' >&2
        deb_ok "$what"
    else
        [ -z "$out" ] || printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /' >&2
        deb_fail "$what"
    fi
}

# deb_owns PATH OWNER:GROUP MODE: the path exists with that owner and mode.
deb_owns() {
    local got
    got=$(deb_root stat -c '%U:%G %a' "$1" 2>/dev/null) || deb_fail "$1 is missing"
    [ "$got" = "$2 $3" ] || deb_fail "$1 is $got, expected $2 $3"
    deb_ok "$1 is $2 $3"
}

deb_absent() {
    ! deb_root test -e "$1" || deb_fail "$1 is still there ($2)"
    deb_ok "$1 is gone ($2)"
}

deb_status() { dpkg-query -W -f='${db:Status-Abbrev}${Version}' "$DEB_NAME" 2>/dev/null || true; }

# sha256 of the keys and the database, one line each, for before/after.
deb_state_sums() {
    deb_root sh -c "cd '$DEB_DATA' && sha256sum keys/* edge.sqlite3*"
}

# Purges the package, ends an edge the check started, removes the user.
deb_cleanup() {
    if [ -n "${DEB_EDGE_PID:-}" ]; then
        deb_root kill -TERM "$DEB_EDGE_PID" 2>/dev/null || true
        wait "$DEB_EDGE_PID" 2>/dev/null || true
        DEB_EDGE_PID=""
    fi
    if [ -n "$(deb_status)" ]; then
        deb_root env DEBIAN_FRONTEND=noninteractive dpkg --purge "$DEB_NAME" >/dev/null 2>&1 || true
    fi
    if getent passwd "$DEB_USER" >/dev/null; then deb_root userdel "$DEB_USER" || true; fi
    if getent group "$DEB_USER" >/dev/null; then deb_root groupdel "$DEB_USER" || true; fi
    [ -z "${DEB_TMP:-}" ] || rm -rf "$DEB_TMP"
}

# Starts the installed edge as the service user with the installed
# configuration on a free loopback port; waits for /readyz 200; sets
# DEB_EDGE_PID and DEB_EDGE_URL.
deb_start_edge() {
    local log=$DEB_TMP/edge-$1.log i=0 banner="" code=""
    # (deb_as_user inlined: exec'd in the background job itself, so $! is
    # the edge's pid when run as root, sudo's otherwise.)
    (
        cd / && umask 077 &&
            exec "${DEB_ROOT[@]}" setpriv --reuid="$DEB_USER" --regid="$DEB_USER" --init-groups \
                /usr/bin/pahlawan edge run --config "$DEB_CONF" --listen 127.0.0.1:0
    ) >"$log" 2>"$log.err" &
    DEB_EDGE_PID=$!
    while [ $i -lt 300 ]; do
        banner=$(sed -n 's/^listening on //p' "$log")
        [ -z "$banner" ] || break
        [ -d "/proc/$DEB_EDGE_PID" ] || break
        sleep 0.1
        i=$((i + 1))
    done
    if [ -z "$banner" ]; then
        tail -n 20 "$log.err" | sed 's/^/    /' >&2
        deb_fail "the installed edge ($1) did not start within 30 s"
    fi
    DEB_EDGE_URL=$banner
    for i in $(seq 1 100); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$DEB_EDGE_URL/readyz" || true)
        [ "$code" != 200 ] || break
        sleep 0.1
    done
    [ "$code" = 200 ] || deb_fail "the installed edge ($1): GET /readyz answered ${code:-nothing}, not 200"
    deb_ok "the installed edge runs as $DEB_USER with $DEB_CONF ($1): $DEB_EDGE_URL/readyz 200"
}

deb_stop_edge() {
    local rc=0
    deb_root kill -TERM "$DEB_EDGE_PID" || true
    wait "$DEB_EDGE_PID" || rc=$?
    DEB_EDGE_PID=""
    [ "$rc" -eq 0 ] || deb_fail "the edge ($1) exited $rc on SIGTERM, not 0 (it drains and exits cleanly)"
    deb_ok "the edge ($1) stopped cleanly on SIGTERM"
}

# An admin call to the running edge: METHOD PATH STATUS [JSON]; fails
# unless it answers STATUS; the body is left in $DEB_TMP/api.out.
deb_api() {
    local method=$1 path=$2 want=$3 body=${4:-} code
    code=$(curl -s -o "$DEB_TMP/api.out" -w '%{http_code}' -X "$method" \
        -H "Authorization: Bearer $DEB_TOKEN" -H 'Content-Type: application/json' \
        ${body:+--data "$body"} "$DEB_EDGE_URL/api/v1$path" || true)
    [ "$code" = "$want" ] ||
        deb_fail "$method /api/v1$path answered ${code:-nothing}, not $want: $(head -c 300 "$DEB_TMP/api.out")"
}

# The first "id" in the last answer.
deb_api_id() { grep -o '"id": *"[^"]*"' "$DEB_TMP/api.out" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/'; }

check_deb() (
    set -euo pipefail
    if [ "$(id -u)" -ne 0 ]; then
        if sudo -n true 2>/dev/null; then
            DEB_ROOT=(sudo -n)
        elif [ "${CI:-}" = true ]; then
            deb_fail "installing the package needs root or passwordless sudo (CI=true: not skipped)"
        else
            echo "deb: SKIPPED: not root and no passwordless sudo: the package is not installed here" >&2
            exit 0
        fi
    fi
    for tool in dpkg dpkg-deb dpkg-query dpkg-shlibdeps systemd-analyze setpriv curl readelf userdel groupdel sha256sum; do
        command -v "$tool" >/dev/null 2>&1 || deb_fail "$tool is missing (scripts/test installs it)"
    done
    trap deb_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cd "$DEB_REPO"
    DEB_TMP=$(mktemp -d /tmp/pahlawan-deb.XXXXXX)
    chmod 0755 "$DEB_TMP"

    # --- 1. the package, from the box binary ---------------------------------
    cargo_deb=$(cargo deb --version 2>/dev/null || true)
    if [ "$cargo_deb" != "cargo-deb $CARGO_DEB_VERSION" ]; then
        log "deb: installing cargo-deb $CARGO_DEB_VERSION"
        cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
    fi
    local bin out=$BOX_TARGET_DIR/debian rev deb1 deb2 v1 v2 sums_before uid_before cargo_deb
    bin=$(build_box)
    local size
    size=$(stat -c %s "$bin")
    deb_check "the x86-64 box binary is $size bytes, under the box's 30,000,000" \
        test "$size" -lt 30000000
    mkdir -p "$out"
    for rev in 1 2; do
        CARGO_TARGET_DIR=$BOX_TARGET_DIR cargo deb -p pahlawan-cli --profile "$BOX_PROFILE" \
            --no-build --no-strip --fast --locked --deb-revision "$rev" \
            --output "$out/${DEB_NAME}_rev$rev.deb" >&2
    done
    deb1=$out/${DEB_NAME}_rev1.deb deb2=$out/${DEB_NAME}_rev2.deb
    deb_check "built $(basename "$deb1") and $(basename "$deb2") ($(du -h "$deb1" | cut -f1) each) in $out" \
        test -s "$deb1" -a -s "$deb2"
    v1=$(dpkg-deb -f "$deb1" Version) v2=$(dpkg-deb -f "$deb2" Version)
    dpkg --compare-versions "$v2" gt "$v1" || deb_fail "$deb2's version $v2 is not newer than $v1"
    dpkg-deb -x "$deb1" "$DEB_TMP/unpacked"
    [ "$(sha256sum <"$DEB_TMP/unpacked/usr/bin/pahlawan")" = "$(sha256sum <"$bin")" ] ||
        deb_fail "the packaged /usr/bin/pahlawan is not $bin (the box build)"
    local sections
    sections=$(readelf -S -W "$bin")
    ! grep -qE '\.symtab|\.debug_(info|line|str|abbrev)' <<<"$sections" ||
        deb_fail "$bin has symbols or debug info: not the stripped box build"
    deb_ok "the package ships the stripped box binary ($bin, $(du -h "$bin" | cut -f1))"

    # --- 2. a fresh install ----------------------------------------------------
    local earlier
    earlier=$(deb_status)
    if [ -n "$earlier" ] || getent passwd "$DEB_USER" >/dev/null; then
        log "deb: purging an earlier install (${earlier:-the $DEB_USER user})"
        deb_root env DEBIAN_FRONTEND=noninteractive dpkg --purge "$DEB_NAME" >/dev/null
        if getent passwd "$DEB_USER" >/dev/null; then deb_root userdel "$DEB_USER"; fi
        if getent group "$DEB_USER" >/dev/null; then deb_root groupdel "$DEB_USER"; fi
        deb_root rm -rf "$DEB_DATA" /etc/pahlawan
    fi
    deb_dpkg "dpkg -i $(basename "$deb1") (first install)" -i "$deb1"
    [ "$(deb_status)" = "ii $v1" ] || deb_fail "dpkg status is '$(deb_status)', expected installed $v1"
    deb_ok "dpkg -s: installed, version $v1"
    dpkg-query --control-show "$DEB_NAME" conffiles | grep -qE "^$DEB_CONF( |\$)" ||
        deb_fail "$DEB_CONF is not among the package's conffiles"
    deb_ok "$DEB_CONF is a conffile"

    local pw uid shell home
    pw=$(getent passwd "$DEB_USER") || deb_fail "no $DEB_USER user after install"
    IFS=: read -r _ _ uid _ _ home shell <<<"$pw"
    [ "$uid" -gt 0 ] && [ "$uid" -lt 1000 ] || deb_fail "$DEB_USER has uid $uid, not a system uid (1-999)"
    case "$shell" in */nologin | /bin/false) ;; *) deb_fail "$DEB_USER has the shell $shell, not nologin" ;; esac
    [ "$home" = "$DEB_DATA" ] || deb_fail "$DEB_USER's home is $home, not $DEB_DATA"
    getent group "$DEB_USER" >/dev/null || deb_fail "no $DEB_USER group"
    deb_ok "the system user $DEB_USER: uid $uid, shell $shell, home $home, its own group"
    uid_before=$uid

    deb_owns /usr/bin/pahlawan root:root 755
    deb_owns /lib/systemd/system/$DEB_UNIT root:root 644
    deb_owns /usr/lib/sysusers.d/pahlawan.conf root:root 644
    deb_owns /etc/pahlawan root:$DEB_USER 750
    deb_owns /etc/pahlawan/certs root:$DEB_USER 750
    deb_owns $DEB_CONF root:$DEB_USER 640
    deb_owns $DEB_DATA $DEB_USER:$DEB_USER 700
    deb_owns $DEB_DATA/keys $DEB_USER:$DEB_USER 700
    local k
    for k in "${DEB_KEYS[@]}"; do deb_owns "$DEB_DATA/keys/$k" "$DEB_USER:$DEB_USER" 600; done
    deb_check "the installed unit is deploy/systemd/$DEB_UNIT" \
        cmp /lib/systemd/system/$DEB_UNIT "$DEB_REPO/deploy/systemd/$DEB_UNIT"
    local verify
    verify=$(systemd-analyze verify /lib/systemd/system/$DEB_UNIT 2>&1) ||
        deb_fail "systemd-analyze verify /lib/systemd/system/$DEB_UNIT: $verify"
    [ -z "$verify" ] || deb_fail "systemd-analyze verify /lib/systemd/system/$DEB_UNIT warns: $verify"
    deb_ok "systemd-analyze verify /lib/systemd/system/$DEB_UNIT: clean"
    deb_check "the installed $DEB_CONF validates (pahlawan edge config, as $DEB_USER)" \
        deb_as_user /usr/bin/pahlawan edge config --config "$DEB_CONF"

    deb_start_edge "$v1"
    DEB_TOKEN=$(deb_as_user /usr/bin/pahlawan token issue --role admin --sub deb-check --config "$DEB_CONF") ||
        deb_fail "pahlawan token issue as $DEB_USER"
    local provider surplus expires
    deb_api POST /providers 201 '{"name": "Toko Roti Deb", "lat": -6.2, "lon": 106.816,
        "contact_phone": "+62 21 555 1234", "contact_email": "roti@example.org"}'
    provider=$(deb_api_id)
    expires=$(date -u -d '+4 hours' +%Y-%m-%dT%H:%M:%SZ)
    deb_api POST /surplus 201 "{\"provider_id\": \"$provider\", \"lat\": -6.2, \"lon\": 106.816,
        \"quantity_kg\": 2.5, \"food_type\": \"bakery\", \"expires_at\": \"$expires\",
        \"description\": \"posted by check_deb\"}"
    surplus=$(deb_api_id)
    [ -n "$surplus" ] || deb_fail "POST /surplus answered no id: $(head -c 300 "$DEB_TMP/api.out")"
    deb_ok "posted provider $provider and surplus $surplus through the API"
    deb_stop_edge "$v1"
    deb_owns $DEB_DATA/edge.sqlite3 $DEB_USER:$DEB_USER 600

    # --- 3. an upgrade over a local edit ---------------------------------------
    deb_root sed -i 's/^retention_days = 90 /retention_days = 45 /' "$DEB_CONF"
    deb_root grep -q '^retention_days = 45 ' "$DEB_CONF" || deb_fail "could not edit $DEB_CONF"
    sums_before=$(deb_state_sums)
    deb_dpkg "dpkg -i $(basename "$deb2") (upgrade, --force-confold)" \
        -i --force-confold --force-confdef "$deb2"
    [ "$(deb_status)" = "ii $v2" ] || deb_fail "dpkg status is '$(deb_status)' after the upgrade, expected installed $v2"
    deb_ok "dpkg -s: upgraded from $v1 to $v2"
    deb_root grep -q '^retention_days = 45 ' "$DEB_CONF" || deb_fail "the upgrade lost the local edit of $DEB_CONF"
    deb_as_user /usr/bin/pahlawan edge config --config "$DEB_CONF" | grep -q '^retention_days = 45$' ||
        deb_fail "the edge does not read the edited $DEB_CONF after the upgrade"
    deb_ok "the local edit of $DEB_CONF survived the upgrade (retention_days = 45)"
    [ "$(deb_state_sums)" = "$sums_before" ] || deb_fail "the upgrade changed the keys or the database"
    deb_ok "the upgrade left the keys and edge.sqlite3 byte for byte ($(printf '%s\n' "$sums_before" | wc -l) files, sha256)"
    [ "$(id -u "$DEB_USER")" = "$uid_before" ] || deb_fail "$DEB_USER's uid moved from $uid_before to $(id -u "$DEB_USER")"
    deb_ok "$DEB_USER keeps uid $uid_before"
    deb_owns $DEB_CONF root:$DEB_USER 640
    for k in "${DEB_KEYS[@]}"; do deb_owns "$DEB_DATA/keys/$k" "$DEB_USER:$DEB_USER" 600; done
    deb_start_edge "$v2"
    deb_api GET "/surplus/$surplus" 200
    grep -q 'posted by check_deb' "$DEB_TMP/api.out" ||
        deb_fail "the surplus posted before the upgrade is not served after it"
    deb_ok "the surplus posted before the upgrade is served after it"
    deb_stop_edge "$v2"
    sums_before=$(deb_state_sums)

    # --- 4. remove, then purge -------------------------------------------------
    deb_dpkg "dpkg -r $DEB_NAME" -r "$DEB_NAME"
    deb_absent /usr/bin/pahlawan "removed"
    deb_absent /lib/systemd/system/$DEB_UNIT "removed"
    [ "$(deb_status)" = "rc $v2" ] || deb_fail "dpkg status is '$(deb_status)' after remove, expected config-files"
    deb_root grep -q '^retention_days = 45 ' "$DEB_CONF" || deb_fail "remove did not keep $DEB_CONF"
    [ "$(deb_state_sums)" = "$sums_before" ] || deb_fail "remove did not keep the keys and the database"
    getent passwd "$DEB_USER" >/dev/null || deb_fail "remove deleted the $DEB_USER user"
    deb_ok "remove kept $DEB_CONF, the keys, the database and the user"
    deb_dpkg "dpkg --purge $DEB_NAME" --purge "$DEB_NAME"
    [ -z "$(deb_status)" ] || deb_fail "dpkg still knows $DEB_NAME after purge: $(deb_status)"
    deb_absent $DEB_DATA "purged"
    deb_absent /etc/pahlawan "purged"
    getent passwd "$DEB_USER" >/dev/null || deb_fail "purge deleted the $DEB_USER user (documented: kept)"
    deb_ok "purge deleted $DEB_DATA and /etc/pahlawan and kept the $DEB_USER user, as documented"
    deb_root userdel "$DEB_USER"
    if getent group "$DEB_USER" >/dev/null; then deb_root groupdel "$DEB_USER"; fi
    deb_ok "removed the $DEB_USER user: the machine is as before"
)
