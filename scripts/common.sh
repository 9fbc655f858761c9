# shellcheck shell=bash
# Shared by scripts/build, scripts/run and their tests (sourced, not a command). Expects `root`
# to be the checkout and the working directory.
: "${root:?}"

# spin.toml names the compiled components under target/ (where `spin build` puts them) and the
# tests find devhost there: the build goes to target/ whatever CARGO_TARGET_DIR says.
export CARGO_TARGET_DIR="$root/target"

# Whether something accepts TCP connections at HOST PORT.
listening() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# PostgreSQL refuses to run as root: then it runs as the `postgres` user, from `/` (it may not
# be allowed into the checkout; every path given to it is absolute).
as_pg() {
    if [ "$(id -u)" = 0 ]; then (cd / && setpriv --reuid=postgres --regid=postgres --init-groups "$@"); else "$@"; fi
}

# 32 random bytes in hex: a token or password.
random_hex() { head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# The directory of PostgreSQL's server binaries: PG_BINDIR, else where the initdb on PATH
# lives, else the newest /usr/lib/postgresql/*/bin (Debian's layout).
find_pg_bin() {
    if [ -n "${PG_BINDIR:-}" ]; then echo "$PG_BINDIR"; return; fi
    if command -v initdb >/dev/null; then dirname "$(readlink -f "$(command -v initdb)")"; return; fi
    find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -n 1
}

# Stops with one line that says what went wrong and what to do about it.
die() {
    echo "error: $*" >&2
    exit 1
}

# Makes sure cargo can build for wasm32-wasip2: adds the target with rustup when it is missing.
# rustup's output goes to LOG; on failure one line names the cause, the fix and LOG.
ensure_rust_toolchain() {
    local log=$1
    command -v cargo >/dev/null ||
        die "cargo is not on PATH: install Rust with rustup (https://rustup.rs), then open a new shell"
    if command -v rustup >/dev/null; then
        rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 && return 0
        echo "adding the Rust target wasm32-wasip2 (rustup target add wasm32-wasip2)..."
        mkdir -p "$(dirname "$log")"
        rustup target add wasm32-wasip2 >"$log" 2>&1 ||
            die "the Rust target wasm32-wasip2 is missing and rustup could not add it (offline?); see $log: run \`rustup target add wasm32-wasip2\` once online, then retry"
        return 0
    fi
    # Rust without rustup (a distribution's package): the target's standard library must be there.
    [ -d "$(rustc --print sysroot)/lib/rustlib/wasm32-wasip2" ] ||
        die "the Rust target wasm32-wasip2 is missing and there is no rustup to add it: install Rust with rustup (https://rustup.rs), or your distribution's wasm32-wasip2 standard library"
}
