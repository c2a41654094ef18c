# Sourced by scripts/test and the box scripts: the edge box's binary —
# `pahlawan` built with the `box` profile (stripped, fat LTO; see
# Cargo.toml) for one target, in a target directory outside the clone
# (PAHLAWAN_BOX_TARGET_DIR, default ~/.cache/pahlawan/target-box), so a
# clean clone rebuilds only what changed since the last run.
#
#   build_box            the host's binary; prints its path
#   build_box aarch64-unknown-linux-gnu
#                        cross-built with Debian's gcc-aarch64-linux-gnu
#                        (installed by the caller); prints its path
# Build output goes to stderr; under `set -e` a failed build fails the run.

BOX_PROFILE=box
BOX_TARGET_DIR="${PAHLAWAN_BOX_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pahlawan/target-box}"

build_box() {
    local triple="${1:-}"
    mkdir -p "$BOX_TARGET_DIR"
    if [ -z "$triple" ]; then
        CARGO_TARGET_DIR="$BOX_TARGET_DIR" cargo build -p pahlawan-cli --bin pahlawan \
            --profile "$BOX_PROFILE" --locked >&2
        printf '%s\n' "$BOX_TARGET_DIR/$BOX_PROFILE/pahlawan"
        return
    fi
    case "$triple" in
    aarch64-unknown-linux-gnu)
        rustup target list --installed 2>/dev/null | grep -qx "$triple" || rustup target add "$triple" >&2
        CARGO_TARGET_DIR="$BOX_TARGET_DIR" \
            CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
            CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
            CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
            AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
            cargo build -p pahlawan-cli --bin pahlawan --profile "$BOX_PROFILE" \
            --target "$triple" --locked >&2
        printf '%s\n' "$BOX_TARGET_DIR/$triple/$BOX_PROFILE/pahlawan"
        ;;
    *)
        echo "build_box: no cross toolchain set up for $triple" >&2
        return 1
        ;;
    esac
}
