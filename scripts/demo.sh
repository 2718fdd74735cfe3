#!/usr/bin/env bash
# make demo: start the lab (primary + 3 standbys + witness) on this machine,
# write a table on the primary, read it back from every standby, show the
# cluster. Stop it with `make demo-down`.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-lab}
BIN=bin/hasidecar
PGBIN=${PGBIN:-/usr/lib/postgresql/15/bin}

scripts/ensure-postgres.sh

# psql runs as the postgres OS user when we are root (the lab trusts loopback).
if [ "$(id -u)" = 0 ]; then PSQL=(runuser -u postgres -- "$PGBIN/psql"); else PSQL=("$PGBIN/psql"); fi

if [ -d "$DIR" ] && $BIN lab status --dir "$DIR" --json 2>/dev/null | grep -q '"sidecar_pid": [1-9]'; then
  echo "a lab is already running in $DIR: showing it (stop it with make demo-down)"
else
  rm -rf "$DIR"
  $BIN lab up --dir "$DIR" --standbys 3 --witness
fi

# Every data node's Postgres port (the only "port:" key in a lab config).
PORTS=($(grep -hE '^[[:space:]]+port:' "$DIR"/pg*/hasidecar.yaml | awk '{print $2}'))
DSN="host=$(printf '127.0.0.1,%.0s' "${PORTS[@]}" | sed 's/,$//') port=$(IFS=,; echo "${PORTS[*]}") user=postgres dbname=postgres target_session_attrs=read-write sslmode=disable"
echo
echo "== writing through the multi-host string (target_session_attrs=read-write finds the primary)"
PRIMARY_PORT=$("${PSQL[@]}" "$DSN" -v ON_ERROR_STOP=1 -Atq <<'SQL'
CREATE TABLE IF NOT EXISTS demo (id serial PRIMARY KEY, note text, at timestamptz DEFAULT now());
INSERT INTO demo (note) VALUES ('hello from the primary'), ('replicated by streaming'), ('through physical slots');
SELECT inet_server_port();
SQL
)
echo "the primary answered on port $PRIMARY_PORT"
WANT=$("${PSQL[@]}" -h 127.0.0.1 -p "$PRIMARY_PORT" -U postgres -d postgres -Atc 'SELECT count(*) FROM demo')
echo "primary has $WANT rows"
for port in "${PORTS[@]}"; do
  [ "$port" = "$PRIMARY_PORT" ] && continue
  got=""
  for _ in $(seq 1 50); do
    got=$("${PSQL[@]}" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc 'SELECT count(*) FROM demo' 2>/dev/null || true)
    [ "$got" = "$WANT" ] && break
    sleep 0.2
  done
  rec=$("${PSQL[@]}" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atc 'SELECT pg_is_in_recovery()')
  echo "standby on port $port (in recovery: $rec) reads $got rows"
  [ "$got" = "$WANT" ] || { echo "standby on port $port did not get the rows" >&2; exit 1; }
done
echo
$BIN cluster show -c "$DIR/pg1/hasidecar.yaml"
echo
echo "Try: $BIN cluster events -c $DIR/pg1/hasidecar.yaml"
echo "     kill the primary's sidecar and Postgres and watch a standby take over"
echo "Stop: make demo-down"
