# shellcheck shell=bash
# scripts/lib.sh — helpers shared by scripts/demo, scripts/test and bench/run.
#
# Sourced, never run. Owns: messages, installing missing Debian packages, the clock, bounded
# waits, stopping processes by pid, and a real `rsync --daemon` on 127.0.0.1 with password
# auth. Must not: kill anything it was not given the pid of, or touch the network beyond
# 127.0.0.1.

# Decimal point for $EPOCHREALTIME and awk, whatever the caller's locale.
export LC_ALL=C

# The repository root (this file lives in <root>/scripts/).
SYNCD_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# The running script as the user would type it from the repository root
# (`scripts/test`, `packaging/test`, `bench/run`): every message names where it came from.
SYNCD_SCRIPT=$(realpath -s "$0" 2>/dev/null || printf '%s' "$0")
SYNCD_SCRIPT=${SYNCD_SCRIPT#"$SYNCD_ROOT/"}

log() { printf '%s: %s\n' "$SYNCD_SCRIPT" "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# now: the wall clock in seconds, with microseconds.
now() { printf '%s\n' "$EPOCHREALTIME"; }

# elapsed T0 [T1]: seconds from T0 to T1 (default: now), two decimals.
elapsed() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.2f\n", b - a }'; }

# ensure_tools CMD[:PACKAGE]...: install the Debian packages of the commands that are
# missing, and only those (`apt-get update` first). CMD may be a full path, for programs
# outside a user's PATH (/usr/sbin/sshd). Needs root when something is missing. Installs
# never start a service (see _install_quietly): a test machine gets the programs, not a
# system sshd on port 22.
ensure_tools() {
    local missing=() spec
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || missing+=("${spec#*:}")
    done
    ((${#missing[@]} == 0)) && return 0
    if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing: ${missing[*]}; install them (e.g. sudo apt-get install ${missing[*]}) and run again"
    fi
    log "installing ${missing[*]} (apt-get update, apt-get install -y, no service started)"
    _install_quietly "${missing[@]}"
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null 2>&1 || die "${spec%%:*} still missing after installing ${spec#*:}"
    done
}

# _install_quietly PACKAGE...: apt-get install with every service start refused. Debian's
# maintainer scripts start services through invoke-rc.d / deb-systemd-invoke, which ask
# /usr/sbin/policy-rc.d first; exit 101 there means "not allowed". An existing policy-rc.d
# (a container image's) is set aside and put back, ours removed, also on failure or Ctrl-C.
# openssh-server also gets /etc/ssh/sshd_not_to_be_run, so no boot starts it either.
# Afterwards no sshd may run that did not run before (openssh-server's postinst would
# start one on port 22): one that appeared is stopped by its pid, and that is an error.
_install_quietly() {
    local policy=/usr/sbin/policy-rc.d saved='' traps before after pid rc=0
    before=$(_sshd_pids)
    if [[ -e $policy ]]; then
        saved=$(mktemp "$policy.syncd-saved.XXXXXX")
        cp -p "$policy" "$saved"
    fi
    # The caller's traps come back afterwards; ours put the policy back on any way out.
    traps=$(trap -p EXIT INT TERM)
    # shellcheck disable=SC2064 # expand now: the trap must restore these paths.
    trap "_restore_policy '$policy' '$saved'" EXIT
    # shellcheck disable=SC2064
    trap "_restore_policy '$policy' '$saved'; exit 130" INT TERM
    if [[ " $* " == *" openssh-server "* ]]; then
        # Debian's ssh unit and init script never start sshd while this file exists (also
        # after a reboot): the tests run their own sshd, the machine needs none.
        mkdir -p /etc/ssh
        : >/etc/ssh/sshd_not_to_be_run
    fi
    printf '#!/bin/sh\n# Written by syncd scripts/lib.sh for a package install: start no service.\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || rc=$?
    if ((rc == 0)); then
        RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" </dev/null || rc=$?
    fi
    _restore_policy "$policy" "$saved"
    trap - EXIT INT TERM
    eval "$traps"
    ((rc == 0)) || die "apt-get failed (exit $rc) installing $*"
    after=$(_sshd_pids)
    for pid in $(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after")); do
        kill -TERM "$pid" 2>/dev/null || true
        wait_until 5 0.05 _gone "$pid" || die "an sshd (pid $pid) started during the install and outlived SIGTERM"
        die "the install of $* started an sshd (pid $pid) although policy-rc.d refused service starts; stopped it. Check $policy and the package's service"
    done
}

# _sshd_pids: the pids of running system sshds (on /etc/ssh/sshd_config: no `-f` in
# their command line, unlike the tests' own), sorted as text, one a line. From /proc: a
# minimal system may have no pgrep.
_sshd_pids() {
    local comm
    for comm in /proc/[0-9]*/comm; do
        [[ $(cat "$comm" 2>/dev/null) == sshd ]] || continue
        [[ $(tr '\0' ' ' <"${comm%/comm}/cmdline" 2>/dev/null) == *" -f "* ]] && continue
        comm=${comm#/proc/}
        printf '%s\n' "${comm%/comm}"
    done | sort
}

# _restore_policy POLICY SAVED: put back the policy-rc.d set aside in SAVED, or remove ours.
_restore_policy() {
    if [[ -n $2 ]]; then
        mv -f "$2" "$1"
    else
        rm -f "$1"
    fi
}

# cargo_target_dir: where cargo puts build output for this workspace.
cargo_target_dir() { printf '%s\n' "${CARGO_TARGET_DIR:-$SYNCD_ROOT/target}"; }

# wait_until SECONDS INTERVAL COMMAND...: run COMMAND every INTERVAL seconds until it
# succeeds (return 0) or SECONDS have passed (return 1).
wait_until() {
    local limit=$1 interval=$2 t0=$EPOCHREALTIME
    shift 2
    while true; do
        "$@" && return 0
        awk -v a="$t0" -v b="$EPOCHREALTIME" -v l="$limit" 'BEGIN { exit !(b - a > l) }' && return 1
        sleep "$interval"
    done
}

# alive PID: the process exists (and is not yet reaped).
alive() { kill -0 "$1" 2>/dev/null; }

_gone() { ! alive "$1"; }

# stop_group PGID [GRACE]: stop a process started with `setsid` (its pid is its process
# group id) and everything it started: SIGTERM the leader and wait up to GRACE seconds
# (default 10), then SIGTERM the whole group, then SIGKILL it. Returns the leader's exit
# status (0 if it was already gone and reaped).
stop_group() {
    local pgid=$1 grace=${2:-10} rc=0
    [[ -n $pgid ]] || return 0
    if alive "$pgid"; then
        kill -TERM "$pgid" 2>/dev/null || true
        wait_until "$grace" 0.05 _gone "$pgid" || true
    fi
    if ! _group_gone "$pgid"; then
        kill -TERM -- "-$pgid" 2>/dev/null || true
        if ! wait_until 3 0.05 _group_gone "$pgid"; then
            kill -KILL -- "-$pgid" 2>/dev/null || true
            wait_until 3 0.05 _group_gone "$pgid" || log "process group $pgid survived SIGKILL"
        fi
    fi
    wait "$pgid" 2>/dev/null || rc=$?
    ((rc == 127)) && rc=0
    return "$rc"
}
_group_gone() { ! kill -0 -- "-$1" 2>/dev/null; }

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# pick_port: a TCP port on 127.0.0.1 that nothing listens on now.
pick_port() {
    local port i
    for ((i = 0; i < 100; i++)); do
        port=$((20000 + (RANDOM * 32768 + RANDOM) % 40000))
        port_open "$port" || {
            printf '%s\n' "$port"
            return 0
        }
    done
    die "found no free TCP port on 127.0.0.1"
}

# write_rsyncd DIR USER PASSWORD MODULE=PATH...: write DIR/rsyncd.conf (daemon on
# 127.0.0.1, one read-write module per MODULE=PATH, password auth for USER),
# DIR/rsyncd.secrets (0600) and the client password file DIR/rsync.password (0600).
write_rsyncd() {
    local dir=$1 user=$2 password=$3 spec
    shift 3
    (
        umask 077
        printf '%s:%s\n' "$user" "$password" >"$dir/rsyncd.secrets"
        printf '%s\n' "$password" >"$dir/rsync.password"
    )
    {
        printf '# rsync daemon for %s: listens on 127.0.0.1 only.\n' "$SYNCD_SCRIPT"
        printf 'address = 127.0.0.1\n'
        printf 'log file = %s/rsyncd.log\n' "$dir"
        printf 'use chroot = no\n'
        # Without a chroot rsync munges symlinks by default: every symlink would arrive
        # as "/rsyncd-munged/<target>". A backup keeps them as they are (what `syncd check`
        # asks of a real daemon too); the module is only reachable on 127.0.0.1.
        printf 'munge symlinks = no\n'
        printf 'max connections = 0\n'
        printf 'timeout = 300\n'
        if [[ $(id -u) -eq 0 ]]; then
            # As root the daemon would otherwise write as nobody and every mkdir would fail.
            printf 'uid = root\ngid = root\n'
        fi
        for spec in "$@"; do
            printf '\n[%s]\n' "${spec%%=*}"
            printf '    path = %s\n' "${spec#*=}"
            printf '    read only = no\n'
            printf '    auth users = %s\n' "$user"
            printf '    secrets file = %s/rsyncd.secrets\n' "$dir"
        done
    } >"$dir/rsyncd.conf"
}

# start_rsyncd DIR: start `rsync --daemon --no-detach` as a background job in its own
# session (so a Ctrl-C at the terminal reaches the caller's trap, not the daemon) with
# DIR/rsyncd.conf on a free port; sets RSYNCD_PID (= its process group) and RSYNCD_PORT
# once it accepts connections. Its own messages go to DIR/rsyncd.out. Stop it with
# stop_group, which also ends the connection handlers it forked.
start_rsyncd() {
    local dir=$1 try
    RSYNCD_PID='' RSYNCD_PORT=''
    for ((try = 0; try < 5; try++)); do
        RSYNCD_PORT=$(pick_port)
        setsid rsync --daemon --no-detach --config="$dir/rsyncd.conf" --port="$RSYNCD_PORT" \
            >>"$dir/rsyncd.out" 2>&1 </dev/null &
        RSYNCD_PID=$!
        if wait_until 10 0.05 _rsyncd_up; then
            return 0
        fi
        # Lost a race for the port, or a bad config: try another port, then give up.
        stop_group "$RSYNCD_PID" 2 || true
        RSYNCD_PID=''
    done
    die "rsync --daemon did not start; its output: $(tail -n 5 "$dir/rsyncd.out" "$dir/rsyncd.log" 2>/dev/null)"
}
_rsyncd_up() { alive "$RSYNCD_PID" && port_open "$RSYNCD_PORT"; }

# status_state FILE: the worker's top-level "state" from its status file ('' if unreadable).
status_state() {
    [[ -r $1 ]] || return 0
    grep -o -m1 '"state"[[:space:]]*:[[:space:]]*"[a-z]*"' "$1" 2>/dev/null |
        head -n1 | sed 's/.*"\([a-z]*\)"$/\1/' || true
}
