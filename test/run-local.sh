#!/usr/bin/env bash
# `make run`: start evident-server on SQLite under ./var, enroll this
# machine's agent against it (once; later runs reuse ./var), deliver one
# collection, print this machine's posture report, and stop the server.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VAR:-var}
BIN=${BIN:-bin}
mkdir -p "$VAR/server" "$VAR/agent"
chmod 700 "$VAR/server" "$VAR/agent"

say() { printf '==> %s\n' "$*" >&2; }

rm -f "$VAR/server/listen.addr"
say "starting evident-server (data in $VAR/server, log in $VAR/server.log)"
"$BIN/evident-server" run --data-dir "$VAR/server" --listen 127.0.0.1:0 >>"$VAR/server.log" 2>&1 &
server_pid=$!
stop_server() {
  if kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap stop_server EXIT

for _ in $(seq 1 100); do
  [ -s "$VAR/server/listen.addr" ] && break
  kill -0 "$server_pid" 2>/dev/null || { say "evident-server exited; its log:"; tail -20 "$VAR/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$VAR/server/listen.addr" ] || { say "evident-server did not start listening within 10 s"; exit 1; }
addr=$(cat "$VAR/server/listen.addr")
say "evident-server listening on $addr"

if [ ! -f "$VAR/agent/identity/enrollment.json" ]; then
  say "creating a single-use enrollment secret and enrolling this machine"
  token=$("$BIN/evident-server" secret create --data-dir "$VAR/server" --label "make run" --single-use --expires 1h 2>/dev/null)
  EVIDENT_ENROLL_TOKEN="$token" "$BIN/evident-agent" enroll --data-dir "$VAR/agent" --server "$addr" >&2
else
  say "this machine is already enrolled (reusing $VAR/agent)"
fi
device=$(sed -n 's/.*"device_id": *"\([^"]*\)".*/\1/p' "$VAR/agent/identity/enrollment.json")

say "collecting and delivering evidence (evident-agent run --once)"
"$BIN/evident-agent" run --once --data-dir "$VAR/agent" --server "$addr" --log-level warn

say "posture report of this machine ($device)"
"$BIN/evident-server" report --data-dir "$VAR/server" --device "$device"
stop_server
trap - EXIT
say "done: run 'make run' again to add to the history, or '$BIN/evident-server report --data-dir $VAR/server --json'"
