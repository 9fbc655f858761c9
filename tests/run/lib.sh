# shellcheck shell=bash
# Helpers of tests/run/check.sh and tests/run/new-user.sh (sourced, after scripts/common.sh):
# start scripts/run as a user at a terminal would, talk to it with the token it prints, stop it
# the way Ctrl-C does, and check that nothing it started is left behind.

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# elapsed SINCE: the time since SECONDS was SINCE, as "M min S s".
elapsed() { echo "$(((SECONDS - $1) / 60)) min $(((SECONDS - $1) % 60)) s"; }

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_run OUT COMMAND...: starts COMMAND (scripts/run, perhaps behind `env`) with its output in
# OUT as a terminal's shell starts it, so that Ctrl-C can be played: in a process group of its
# own (job control), and with SIGINT's default action even when this script was started with
# SIGINT ignored (as a background job of a script is), which scripts/run would inherit. Sets
# run_pid.
start_run() {
    local out=$1
    shift
    : >"$out"
    set -m
    env --default-signal=INT "$@" >"$out" 2>&1 </dev/null &
    run_pid=$!
    set +m
}

# wait_served OUT SECONDS HEADER_FILE: waits until the run prints its API token; sets base_url
# and writes the Authorization header into HEADER_FILE for http_status, so that the test's own
# requests keep the token off their command lines too (the tests look for it there).
wait_served() {
    local out=$1 deadline=$((SECONDS + $2))
    auth_header=$3
    until grep -q '^API token (Authorization: Bearer ...): ' "$out"; do
        if ! kill -0 "$run_pid" 2>/dev/null || [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$out" >&2
            fail "scripts/run did not serve (within $2 s; its output is above, all of it in $out)"
        fi
        sleep 1
    done
    base_url=$(sed -nE 's/^serving with .* on (http:[^ ]+) .*/\1/p' "$out")
    (umask 077 && sed -nE 's/^API token \(Authorization: Bearer \.\.\.\): (.*)$/Authorization: Bearer \1/p' "$out" >"$auth_header")
}

# http_status METHOD PATH [CURL ARGS...]: the status of a request with the printed token.
http_status() {
    local method=$1 path=$2
    shift 2
    curl -sS -o /dev/null -w '%{http_code}' -X "$method" -H "@$auth_header" "$@" "$base_url$path"
}

# check_api: the app serves with the printed token: GET /events is 200, a POST 201.
check_api() {
    local status
    status=$(http_status GET /events)
    [ "$status" = 200 ] || fail "GET /events with the printed token answered $status, not 200"
    status=$(http_status POST /events -H 'Content-Type: application/json' \
        -d '{"title": "First hour", "date": "2024-11-15"}')
    [ "$status" = 201 ] || fail "POST /events with the printed token answered $status, not 201"
}

# Whether process PID runs (a zombie, dead but not yet reaped by its new parent, does not).
alive() {
    local stat
    stat=$(ps -o stat= -p "$1") && [ "${stat#Z}" = "$stat" ]
}

# stop_run OUT group|process: sends SIGINT to the run's whole process group, as Ctrl-C at a
# terminal does, or to scripts/run alone; then checks that it ended with status 0 within two
# minutes and left nothing behind: no process of its group, no runtime, no PostgreSQL, no
# listener on the API's or PostgreSQL's port.
stop_run() {
    local out=$1 how=$2 api_port pg_port pg_data pid status=0 spawned=()
    api_port=${base_url##*:}
    pg_port=$(sed -nE 's/^local PostgreSQL on 127\.0\.0\.1:([0-9]+) .*/\1/p' "$out")
    pg_data=$(sed -nE 's/^local PostgreSQL on .* \(data in ([^,]+),.*/\1/p' "$out")
    mapfile -t spawned < <(
        pgrep -g "$run_pid"
        ss -Hltnp "sport = :$api_port" | sed -nE 's/.*pid=([0-9]+).*/\1/p'
        [ -z "$pg_data" ] || head -n 1 "$pg_data/postmaster.pid"
    )
    if [ "$how" = group ]; then kill -INT -- "-$run_pid"; else kill -INT "$run_pid"; fi
    # Two minutes: PostgreSQL's shutdown checkpoint can be slow on a disk that builds share.
    local asked=$SECONDS
    for _ in $(seq 1 240); do
        kill -0 "$run_pid" 2>/dev/null || break
        sleep 0.5
    done
    kill -0 "$run_pid" 2>/dev/null &&
        fail "scripts/run still runs two minutes after SIGINT; its process group: $(pgrep -g "$run_pid" | xargs -r ps -o pid=,stat=,args= -p | tr '\n' ';')"
    echo "stopped $((SECONDS - asked)) s after SIGINT"
    wait "$run_pid" || status=$?
    run_pid=
    [ "$status" = 0 ] || fail "scripts/run ended with status $status after SIGINT, not 0"
    for pid in "${spawned[@]}"; do
        ! alive "$pid" || fail "process $pid ($(ps -o args= -p "$pid")) is left after the stop"
    done
    ! listening 127.0.0.1 "$api_port" || fail "something still listens on the API's port $api_port"
    [ -z "$pg_port" ] || ! listening 127.0.0.1 "$pg_port" ||
        fail "something still listens on PostgreSQL's port $pg_port"
}
