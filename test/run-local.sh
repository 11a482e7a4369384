#!/usr/bin/env bash
# `make run`: start evident-server on SQLite under ./var, enroll this
# machine's agent against it (once; later runs reuse ./var), deliver one
# collection, print this machine's posture report, and stop the server.
#
# TPM: the agent binds its identity to this machine's TPM when it has one
# (EVIDENT_TPM=auto, the default), or to the TPM EVIDENT_TPM names
# (swtpm:HOST:PORT, unix:PATH, a device path, or none). EVIDENT_TPM=swtpm
# starts a software TPM for the run, kept under ./var/swtpm so its EK stays
# the same across runs (`make run-swtpm`). The server trusts that one TPM by
# its EK hash (./var/server/ek-allowlist), as an admin would allowlist it.
set -euo pipefail
cd "$(dirname "$0")/.."
VAR=${VAR:-var}
BIN=${BIN:-bin}
mkdir -p "$VAR/server" "$VAR/agent"
chmod 700 "$VAR/server" "$VAR/agent"

say() { printf '==> %s\n' "$*" >&2; }

TPM=${EVIDENT_TPM:-auto}
swtpm_pid=
stop_swtpm() { if [ -n "$swtpm_pid" ]; then kill "$swtpm_pid" 2>/dev/null || true; wait "$swtpm_pid" 2>/dev/null || true; fi; }
if [ "$TPM" = swtpm ]; then
  command -v swtpm >/dev/null && command -v swtpm_setup >/dev/null || { say "EVIDENT_TPM=swtpm needs swtpm and swtpm_setup (apt-get install swtpm swtpm-tools)"; exit 1; }
  if [ ! -d "$VAR/swtpm/state" ]; then
    mkdir -p "$VAR/swtpm/state"
    say "provisioning a software TPM in $VAR/swtpm (EK and EK certificate)"
    swtpm_setup --tpm2 --tpmstate "$VAR/swtpm/state" --createek --create-ek-cert --create-platform-cert --lock-nvram \
      --pcr-banks sha256 >"$VAR/swtpm/setup.log" 2>&1 || { say "swtpm_setup failed; its log:"; cat "$VAR/swtpm/setup.log" >&2; exit 1; }
  fi
  port=$(python3 -c 'import socket
for _ in range(50):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()')
  swtpm socket --tpm2 --tpmstate dir="$VAR/swtpm/state" --flags not-need-init,startup-clear \
    --server type=tcp,port="$port",bindaddr=127.0.0.1 --ctrl type=tcp,port=$((port + 1)),bindaddr=127.0.0.1 >>"$VAR/swtpm/swtpm.log" 2>&1 &
  swtpm_pid=$!
  trap stop_swtpm EXIT
  TPM="swtpm:127.0.0.1:$port"
  for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
  say "software TPM listening on 127.0.0.1:$port"
fi
export EVIDENT_TPM="$TPM"
if [ "$TPM" != none ] && ek=$("$BIN/evident-agent" tpm --tpm "$( [ "$TPM" = auto ] && echo "" || echo "$TPM")" 2>/dev/null); then
  hash=$(printf '%s\n' "$ek" | sed -n 's/^ek_sha256: //p')
  touch "$VAR/server/ek-allowlist"
  if ! grep -qx "$hash" "$VAR/server/ek-allowlist"; then
    say "trusting this machine's TPM (EK sha256 $hash) in $VAR/server/ek-allowlist"
    printf '# added by make run: the TPM of this machine\n%s\n' "$hash" >>"$VAR/server/ek-allowlist"
  fi
elif [ "$TPM" = auto ]; then
  say "no TPM on this machine: the agent enrolls without one (DC-TPM-01 will say so; make run-swtpm shows attestation with a software TPM)"
fi

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
trap 'stop_server; stop_swtpm' EXIT

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
  EVIDENT_ENROLL_SECRET="$token" "$BIN/evident-agent" enroll --data-dir "$VAR/agent" --server "$addr" >&2
else
  say "this machine is already enrolled (reusing $VAR/agent)"
fi
device=$(sed -n 's/.*"device_id": *"\([^"]*\)".*/\1/p' "$VAR/agent/identity/enrollment.json")

say "collecting and delivering evidence (evident-agent run --once)"
"$BIN/evident-agent" run --once --data-dir "$VAR/agent" --server "$addr" --log-level warn

say "posture report of this machine ($device)"
"$BIN/evident-server" report --data-dir "$VAR/server" --device "$device"
stop_server
stop_swtpm
trap - EXIT
say "done: run 'make run' again to add to the history, or '$BIN/evident-server report --data-dir $VAR/server --json'"
say "web UI: run 'make serve', open http://${WEB:-127.0.0.1:8080}/ and log in with the auditor token it prints"
say "period report: $BIN/evident-server report period --data-dir $VAR/server --from $(date -u +%Y-%m-01) --to $(date -u -d tomorrow +%F) [--format csv|json|oscal]"
