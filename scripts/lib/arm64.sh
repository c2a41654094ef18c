# Sourced by scripts/test (after scripts/lib/box.sh): check_arm64 cross-
# builds the edge box's binary for aarch64-unknown-linux-gnu (Raspberry Pi
# 4/5 class) with Debian's gcc-aarch64-linux-gnu, and runs the edge's smoke
# test (cli/tests/box_smoke.rs) against it under qemu-user: start, register,
# post, match, claim, kill -9, restart, every acknowledged post present.
#
# The Debian packages (gcc-aarch64-linux-gnu, libc6-dev-arm64-cross,
# qemu-user) are installed by scripts/test's set-up; the rustup target is
# added here. Under `set -e` a failed install, build or test fails the run;
# it never skips.
#
# Bounded: one release build for one target, in box.sh's target directory
# outside the clone (cached by CI). Timings on the 2-core CI machine are in
# BENCHMARKS.md ("The edge box: footprint").

ARM64_TARGET=aarch64-unknown-linux-gnu
# The target's libraries for qemu-user's dynamic loader.
ARM64_SYSROOT=/usr/aarch64-linux-gnu
# The size the box binary must stay under (issue 17): 30 MB, stripped.
BOX_MAX_BYTES=30000000

check_arm64() {
    local t0 bin size
    t0=$SECONDS
    bin=$(build_box "$ARM64_TARGET")
    log "arm64: built in $((SECONDS - t0))s: $bin"

    # readelf: binutils, with build-essential.
    readelf -h "$bin" | grep -E '^ *(Class|Machine):' >&2
    readelf -h "$bin" | grep -q 'Machine:[[:space:]]*AArch64' ||
        { echo "arm64: $bin is not an AArch64 ELF" >&2; return 1; }
    size=$(stat -c %s "$bin")
    log "arm64: the box binary is $size bytes (limit $BOX_MAX_BYTES)"
    [ "$size" -lt "$BOX_MAX_BYTES" ] ||
        { echo "arm64: the box binary is $size bytes, not under $BOX_MAX_BYTES (30 MB)" >&2; return 1; }

    qemu-aarch64 -L "$ARM64_SYSROOT" "$bin" --version

    log "arm64: the edge's smoke test against $bin under qemu-aarch64"
    PAHLAWAN_SMOKE_BIN="$bin" PAHLAWAN_SMOKE_RUNNER="qemu-aarch64 -L $ARM64_SYSROOT" \
        cargo nextest run -p pahlawan-cli --test box_smoke --locked --no-fail-fast
}
