# Helpers shared by the bench/*.sh scripts; sourced, not run. Callers set `-euo pipefail` and,
# before wait_port, TMP (a temp dir whose *.log files are shown when a server dies).

log() { printf '== %s\n' "$*" >&2; }

# The path of a program, also from /usr/sbin (nginx), or nothing.
find_tool() {
    command -v "$1" 2>/dev/null || { [[ -x "/usr/sbin/$1" ]] && echo "/usr/sbin/$1"; } || true
}

# Installs Debian packages (sudo when not root).
install_packages() {
    log "installing $*"
    local sudo=()
    if [[ "$(id -u)" -ne 0 ]]; then sudo=(sudo); fi
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@"
}

# Every probe, request and proxied connection holds a socket: raise the open-files limit to
# 65536, or to the hard limit when that is lower.
raise_open_files() {
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
}

# A free port below the ephemeral range (so no client socket can hold it), other than the ports
# given as arguments (ports picked earlier whose server is not listening yet).
free_port() {
    local p
    for p in $(shuf -i 20000-30000 -n 200); do
        if [[ " $* " != *" $p "* && -z "$(ss -Htln "sport = :$p")" ]]; then
            echo "$p"
            return
        fi
    done
    log "no free port found"
    exit 1
}

# Waits (10 s at most) until something listens on 127.0.0.1:PORT; fails if PID exits first.
wait_port() {
    local port=$1 pid=$2 what=$3
    for _ in $(seq 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return; fi
        kill -0 "$pid" 2>/dev/null || { log "$what did not start"; cat "$TMP"/*.log >&2 || true; exit 1; }
        sleep 0.1
    done
    log "$what is not listening on $port"
    exit 1
}

# The median of the numbers on stdin, one per line (the lower middle one of an even count).
median() { sort -n | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'; }
