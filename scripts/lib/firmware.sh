# Sourced by scripts/test: check_firmware cross-builds the embedded kiosk
# for a Cortex-M4F board (thumbv7em-none-eabihf; no board needed) and prints
# its code size. It installs the target and llvm-tools with rustup; under
# `set -e` a failed install or build fails the run, it never skips.
#
# What it proves: sync-protocol builds for a no_std target with and without
# `alloc`; the firmware core and the image link with no allocator and fit
# firmware/image/memory.x (the linker refuses otherwise); clippy is clean on
# the board-only code. Bounded: a handful of small crates, ~2 minutes on 2
# cores from nothing, seconds when cached in the clone's target/.

FIRMWARE_TARGET=thumbv7em-none-eabihf

check_firmware() {
    rustup target list --installed 2>/dev/null | grep -qx "$FIRMWARE_TARGET" ||
        rustup target add "$FIRMWARE_TARGET"
    rustup component list --installed 2>/dev/null | grep -q '^llvm-tools' ||
        rustup component add llvm-tools

    log "firmware: sync-protocol for $FIRMWARE_TARGET, with and without alloc"
    cargo check -p sync-protocol --no-default-features --target "$FIRMWARE_TARGET" --locked
    cargo check -p sync-protocol --no-default-features --features alloc --target "$FIRMWARE_TARGET" --locked

    log "firmware: clippy and the kiosk image for $FIRMWARE_TARGET"
    cargo clippy -p firmware -p kiosk-image --target "$FIRMWARE_TARGET" --locked -- -D warnings
    cargo build -p kiosk-image --profile firmware --target "$FIRMWARE_TARGET" --locked

    local host llvm_size image
    host=$(rustc -vV | sed -n 's/^host: //p')
    llvm_size="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-size"
    image="${CARGO_TARGET_DIR:-target}/$FIRMWARE_TARGET/firmware/kiosk-image"
    log "firmware: code size of $image (BENCHMARKS.md)"
    "$llvm_size" -A "$image"
}
