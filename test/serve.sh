#!/usr/bin/env bash
# `make serve`: keep evident-server up on ./var (what `make run` filled) with
# the web UI on 127.0.0.1:8080 (WEB=host:port to change), and print an
# auditor login token. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VAR:-var}
BIN=${BIN:-bin}
WEB=${WEB:-127.0.0.1:8080}
say() { printf '==> %s\n' "$*" >&2; }

if [ ! -f "$VAR/server/evident.db" ]; then
  say "no data in $VAR yet: running make run's script first"
  ./test/run-local.sh >/dev/null
fi
rm -f "$VAR/server/web.url"
"$BIN/evident-server" run --data-dir "$VAR/server" --listen 127.0.0.1:0 --web-listen "$WEB" >>"$VAR/server.log" 2>&1 &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM
for _ in $(seq 1 100); do
  [ -s "$VAR/server/web.url" ] && break
  kill -0 "$pid" 2>/dev/null || { say "evident-server exited; its log:"; tail -20 "$VAR/server.log" >&2; exit 1; }
  sleep 0.1
done
[ -s "$VAR/server/web.url" ] || { say "the web UI did not start within 10 s; see $VAR/server.log"; exit 1; }
# Only once the server is up: a server that cannot start (a busy port)
# leaves no token behind.
token=$("$BIN/evident-server" token create --data-dir "$VAR/server" --role auditor --label "make serve" --expires 12h 2>/dev/null)
say "web UI: $(cat "$VAR/server/web.url")"
say "log in with this auditor token (read-only, valid 12 h):"
printf '%s\n' "$token"
say "serving until Ctrl-C (log: $VAR/server.log)"
wait "$pid"
