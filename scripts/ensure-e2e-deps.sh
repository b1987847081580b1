#!/usr/bin/env bash
# Install what the end-to-end tests (tests/e2e) need, only what is missing.
#
#   apt (Debian):  chromium                 headless browser (/usr/bin/chromium), driven by
#                                          playwright-core; no browser is ever downloaded
#                  php-cli php-amqplib      examples/php/notify.php
#                  php-stomp                PHP's Stomp extension (STOMP over TCP), if packaged
#                  docker-compose           `docker-compose config` for tests/e2e/test_compose.py,
#                                          only when the docker CLI has no `compose` plugin
#                  haproxy                  `haproxy -c` on config/cluster/haproxy.cfg
#                  nodejs npm               only when node itself is missing
#   npm:           tests/e2e/node_modules   `npm ci` from package-lock.json when missing or
#                                          when the lock file changed since the last install
#
# apt needs root or passwordless sudo. Whatever cannot be installed is listed at the end
# and the script exits 1: the tests that need it then skip, each saying why
# (`make test` carries on). E2E_SKIP_INSTALL=1 only reports.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
E2E=tests/e2e
say() { echo "ensure-e2e-deps: $*" >&2; }

SUDO=()
admin=0
if [[ $(id -u) -eq 0 ]]; then
    admin=1
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
    admin=1
fi

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
has_compose() {
    { command -v docker >/dev/null && docker compose version >/dev/null 2>&1; } \
        || command -v docker-compose >/dev/null
}

# ------------------------------------------------------------------------------- apt --
wanted=(chromium php-cli php-amqplib php-stomp haproxy)
has_compose || wanted+=(docker-compose)
command -v node >/dev/null || wanted+=(nodejs npm)
missing=()
for pkg in "${wanted[@]}"; do
    installed "$pkg" || missing+=("$pkg")
done

apt_updated=0
apt_install() {
    local pkgs=("$@") available=()
    if ((!apt_updated)); then
        "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 || say "apt-get update failed"
        apt_updated=1
    fi
    for pkg in "${pkgs[@]}"; do
        # php-stomp (and anything else) may not be packaged for this release: skip it.
        if [[ -n $(apt-cache policy "$pkg" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}') ]]; then
            available+=("$pkg")
        else
            say "no Debian package $pkg here: skipped"
        fi
    done
    ((${#available[@]})) || return 0
    say "apt-get install ${available[*]}"
    local log rc=0
    log=$(mktemp)
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${available[@]}" >"$log" 2>&1 || rc=$?
    ((rc == 0)) || tail -n 20 "$log" >&2
    rm -f "$log"
    return "$rc"
}

if ((${#missing[@]})); then
    if [[ ${E2E_SKIP_INSTALL:-0} == 1 ]]; then
        say "E2E_SKIP_INSTALL=1: not installing ${missing[*]}"
    elif ((admin)) && command -v apt-get >/dev/null; then
        apt_install "${missing[@]}" || say "apt-get install failed"
    else
        say "cannot install ${missing[*]}: not root, no passwordless sudo or no apt-get"
    fi
fi

# ------------------------------------------------------------------------------- npm --
lock_sum() { sha256sum "$E2E/package-lock.json" | cut -d' ' -f1; }
stamp=$E2E/node_modules/.stamp-lock-sha256
if command -v npm >/dev/null; then
    if [[ ! -f $stamp || $(cat "$stamp") != "$(lock_sum)" ]]; then
        if [[ ${E2E_SKIP_INSTALL:-0} == 1 ]]; then
            say "E2E_SKIP_INSTALL=1: not running npm ci"
        else
            say "npm ci in $E2E (package-lock.json)"
            # --omit=optional: legacy stompjs lists the node `websocket` package as an
            # optional dependency; browsers do not need it.
            if (cd "$E2E" && npm ci --omit=optional --no-audit --no-fund --loglevel=error \
                2> >(grep -v 'Unknown user config' >&2) >/dev/null); then
                lock_sum >"$stamp"
            else
                say "npm ci failed"
            fi
        fi
    fi
fi

# ---------------------------------------------------------------------------- report --
problems=()
command -v node >/dev/null || problems+=("node")
if command -v node >/dev/null; then
    major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
    ((major >= 20)) || problems+=("node >= 20 (found $(node --version))")
fi
[[ -f $E2E/node_modules/playwright-core/package.json ]] || problems+=("$E2E/node_modules (npm ci)")
[[ -x ${CHROMIUM_PATH:-/usr/bin/chromium} ]] || problems+=("chromium")
command -v php >/dev/null || problems+=("php-cli")
[[ -f /usr/share/php/PhpAmqpLib/autoload.php ]] || problems+=("php-amqplib")
has_compose || problems+=("docker compose / docker-compose")
command -v haproxy >/dev/null || [[ -x /usr/sbin/haproxy ]] || problems+=("haproxy")

if ((${#problems[@]})); then
    echo "ensure-e2e-deps: MISSING: ${problems[*]} -- the e2e tests that need them will SKIP" >&2
    exit 1
fi
say "ok: $(${CHROMIUM_PATH:-/usr/bin/chromium} --version 2>/dev/null | head -n1), node $(node --version), $(php -r 'echo "PHP ", PHP_VERSION;'), php-amqplib, $( (docker compose version 2>/dev/null || docker-compose version --short 2>/dev/null) | head -n1)"
