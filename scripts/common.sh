# common.sh - helpers sourced by the set-up scripts (not run directly).
set -euo pipefail

BITLAB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BITLAB_CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/bitlab"
DEFAULT_MODEL="$BITLAB_ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf"

say() { printf '\033[1m[bitlab]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bitlab] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Runs a command as root: directly when we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else die "need root to run: $* (install sudo or run as root)"; fi
}
