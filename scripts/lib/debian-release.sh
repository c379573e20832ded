# shellcheck shell=bash
# The one setting that picks the Debian release of the test hosts, the
# Vagrant docker image, the bench hosts and the compose images:
#
#   LOYALTY_DEBIAN_RELEASE=trixie     Debian 13, the default
#   LOYALTY_DEBIAN_RELEASE=bookworm   Debian 12
#
# Each release has its own host image, loyalty-host:<release>
# (scripts/host-image).

readonly LOYALTY_DEBIAN_RELEASES=(trixie bookworm)
readonly LOYALTY_DEFAULT_RELEASE=trixie

# Prints the release named by $1, or by LOYALTY_DEBIAN_RELEASE, or the
# default; exits with a sentence when it is not one the platform supports.
# Debian's version numbers are accepted as well (13, 12).
debian_release() {
    local release="${1:-${LOYALTY_DEBIAN_RELEASE:-$LOYALTY_DEFAULT_RELEASE}}"
    case "$release" in
        13) release=trixie ;;
        12) release=bookworm ;;
    esac
    local known
    for known in "${LOYALTY_DEBIAN_RELEASES[@]}"; do
        if [[ "$release" == "$known" ]]; then
            echo "$release"
            return 0
        fi
    done
    echo "LOYALTY_DEBIAN_RELEASE='$release' is not a supported Debian release; use trixie (13, the default) or bookworm (12)." >&2
    exit 2
}

# What each release is and ships, where the scripts need it: Debian's
# version number, its python3's version (the wheels serve every X.Y.Z of the
# same X.Y), and the official images with its Python, Redis and HAProxy
# (the compose images' default bases).
debian_version() {
    case "$1" in
        trixie) echo 13 ;;
        bookworm) echo 12 ;;
    esac
}
release_python() {
    case "$1" in
        trixie) echo 3.13.5 ;;
        bookworm) echo 3.11.2 ;;
    esac
}
release_compose_bases() {
    case "$1" in
        trixie) echo python:3.13-slim-trixie redis:8 haproxy:3.0 ;;
        bookworm) echo python:3.11-slim-bookworm redis:7 haproxy:2.6 ;;
    esac
}

# The test-host image of a release.
host_image() { echo "loyalty-host:$1"; }
