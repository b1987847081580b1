#!/usr/bin/env bash
# Make sure a RabbitMQ broker is reachable for the gateway and its tests.
#
#   1. AMQP_HOST:AMQP_PORT (default 127.0.0.1:5672) accepts TCP  -> check the login, done.
#   2. else, for a local broker (RABBITMQ_AUTOSTART=auto, the default: local host and
#      port 5672 only; =1: any local port; =0: never) and as root or with passwordless
#      sudo: start an installed rabbitmq-server, or first install Debian's package with
#      apt-get, then wait up to RABBITMQ_WAIT (90) seconds
#      for the port and for `rabbitmqctl await_startup`.
#   3. else print one line saying how to get a broker, exit 1.
#
# Then the login AMQP_USER/AMQP_PASS (guest/guest) on AMQP_VHOST (/) is tried with a
# real AMQP handshake; on a local broker a missing guest user is recreated.
# RABBITMQ_PLUGINS="a b" enables those plugins on a local broker (no-op when remote).
set -euo pipefail

host=${AMQP_HOST:-127.0.0.1}
port=${AMQP_PORT:-5672}
user=${AMQP_USER:-guest}
pass=${AMQP_PASS:-guest}
vhost=${AMQP_VHOST:-/}
wait_s=${RABBITMQ_WAIT:-90}
autostart=${RABBITMQ_AUTOSTART:-auto}
plugins=${RABBITMQ_PLUGINS:-}

say() { echo "ensure-rabbitmq: $*" >&2; }
die_unreachable() {
    echo "RabbitMQ is not reachable at $host:$port: start one with 'docker compose up -d rabbitmq' or install Debian's rabbitmq-server" >&2
    exit 1
}

port_open() { timeout 3 bash -c "</dev/tcp/$host/$port" 2>/dev/null; }

case $host in 127.0.0.1 | localhost | ::1) local_host=1 ;; *) local_host=0 ;; esac

# May we administer the machine? SUDO is the prefix: none as root, "sudo -n" with
# passwordless sudo.
SUDO=()
admin=0
if [[ $(id -u) -eq 0 ]]; then
    admin=1
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
    admin=1
fi
can_admin() { ((admin)); }

# rabbitmqctl talks to a local node: only when installed and we may run it.
ctl() { "${SUDO[@]}" rabbitmqctl "$@"; }
have_ctl() { (( local_host )) && command -v rabbitmqctl >/dev/null && can_admin; }
node_up() { have_ctl && timeout 20 "${SUDO[@]}" rabbitmqctl -q status >/dev/null 2>&1; }

wait_ready() {
    local deadline=$((SECONDS + wait_s))
    while ((SECONDS < deadline)); do
        if port_open && timeout 15 "${SUDO[@]}" rabbitmqctl -q await_startup >/dev/null 2>&1; then
            say "RabbitMQ is up at $host:$port"
            return 0
        fi
        sleep 1
    done
    say "RabbitMQ did not come up within ${wait_s}s; last lines of its log:"
    tail -n 20 /var/log/rabbitmq/*.log 2>/dev/null >&2 || true
    return 1
}

start_server() {
    say "starting rabbitmq-server -detached"
    # -detached returns at once; a failure shows up as a timeout in wait_ready.
    "${SUDO[@]}" rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_ready
}

install_server() {
    say "installing Debian's rabbitmq-server"
    # Keep dpkg from starting the service itself (no systemd here); we start it below.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
        "${SUDO[@]}" chmod 755 "$policy"
        own_policy=1
    fi
    local rc=0
    "${SUDO[@]}" apt-get update -qq || rc=$?
    if ((rc == 0)); then
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends rabbitmq-server >/dev/null || rc=$?
    fi
    ((own_policy)) && "${SUDO[@]}" rm -f "$policy"
    ((rc == 0)) || { say "apt-get failed (exit $rc)"; return 1; }
    # A node name that resolves without DNS, listening on loopback only, as on the
    # machines this project runs on. Only when the package left these unset.
    local envf=/etc/rabbitmq/rabbitmq-env.conf conf=/etc/rabbitmq/rabbitmq.conf
    if ! grep -qs '^NODENAME=' "$envf"; then
        printf 'NODENAME=rabbit@localhost\n' | "${SUDO[@]}" tee -a "$envf" >/dev/null
    fi
    if ! grep -qs '^listeners\.tcp' "$conf"; then
        printf 'listeners.tcp.local = 127.0.0.1:5672\n' | "${SUDO[@]}" tee -a "$conf" >/dev/null
    fi
}

# ------------------------------------------------------------------ reachable? --
if ! port_open; then
    if (( local_host )) && can_admin \
        && [[ $autostart == 1 || ($autostart == auto && $port == 5672) ]]; then
        if command -v rabbitmq-server >/dev/null; then
            if node_up; then
                say "a RabbitMQ node is running but $host:$port refuses connections"
                die_unreachable
            fi
            start_server || die_unreachable
        elif command -v apt-get >/dev/null; then
            install_server || die_unreachable
            start_server || die_unreachable
        else
            die_unreachable
        fi
    else
        die_unreachable
    fi
fi

# --------------------------------------------------------------------- plugins --
if [[ -n $plugins ]]; then
    if (( local_host )) && command -v rabbitmq-plugins >/dev/null && node_up; then
        # shellcheck disable=SC2086
        timeout 60 "${SUDO[@]}" rabbitmq-plugins -q enable $plugins >/dev/null \
            || say "could not enable plugins: $plugins"
    else
        say "not a local broker I can manage: make sure these plugins are enabled: $plugins"
    fi
fi

# ----------------------------------------------------------------------- login --
# A real AMQP 0-9-1 handshake (PLAIN login + connection.open on the vhost), stdlib only.
amqp_login() {
    python3 - "$host" "$port" "$user" "$pass" "$vhost" <<'PY'
import socket, struct, sys

host, port, user, password, vhost = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]

def shortstr(s: str) -> bytes:
    b = s.encode()
    return bytes([len(b)]) + b

def longstr(b: bytes) -> bytes:
    return struct.pack(">I", len(b)) + b

def send(sock: socket.socket, cls: int, meth: int, args: bytes) -> None:
    payload = struct.pack(">HH", cls, meth) + args
    sock.sendall(struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce")

def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the broker")
        buf += chunk
    return buf

def recv_method(sock: socket.socket) -> tuple[int, int, bytes]:
    while True:
        ftype, _chan, size = struct.unpack(">BHI", recv_exact(sock, 7))
        payload = recv_exact(sock, size + 1)[:-1]
        if ftype == 1:
            cls, meth = struct.unpack(">HH", payload[:4])
            return cls, meth, payload[4:]

def fail(why: str) -> None:
    print(f"AMQP login as {user!r} on vhost {vhost!r} at {host}:{port} failed: {why}", file=sys.stderr)
    sys.exit(1)

try:
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(b"AMQP\x00\x00\x09\x01")
        if recv_method(s)[:2] != (10, 10):
            fail("no connection.start")
        caps = shortstr("capabilities") + b"F" + longstr(
            shortstr("authentication_failure_close") + b"t\x01")
        send(s, 10, 11, longstr(caps) + shortstr("PLAIN")
             + longstr(b"\0" + user.encode() + b"\0" + password.encode()) + shortstr("en_US"))
        cls, meth, args = recv_method(s)
        if (cls, meth) == (10, 50):
            fail(args[3:3 + args[2]].decode(errors="replace"))
        if (cls, meth) != (10, 30):
            fail(f"unexpected method {cls}.{meth}")
        channel_max, frame_max, _hb = struct.unpack(">HIH", args[:8])
        send(s, 10, 31, struct.pack(">HIH", channel_max, frame_max, 0))
        send(s, 10, 40, shortstr(vhost) + shortstr("") + b"\x00")
        cls, meth, args = recv_method(s)
        if (cls, meth) == (10, 50):
            fail(args[3:3 + args[2]].decode(errors="replace"))
        if (cls, meth) != (10, 41):
            fail(f"unexpected method {cls}.{meth}")
        send(s, 10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0))
        try:
            recv_method(s)  # close-ok
        except (ConnectionError, OSError):
            pass
except (OSError, ConnectionError, struct.error) as exc:
    fail(str(exc) or type(exc).__name__)
PY
}

if ! amqp_login; then
    users=$(have_ctl && ctl -q list_users 2>/dev/null || true)
    if have_ctl && [[ $user == guest ]] && ! grep -qw '^guest' <<<"$users"; then
        say "recreating the default guest user"
        ctl -q add_user guest "$pass" >/dev/null
        ctl -q set_user_tags guest administrator >/dev/null
        ctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
        amqp_login || exit 1
    else
        exit 1
    fi
fi
say "RabbitMQ at $host:$port accepts $user on vhost $vhost"
