# Sourced by scripts/test and scripts/with-env: starts a throwaway
# PostgreSQL 15 and a Synapse (installed into a cached virtualenv), both
# stopped when the sourcing shell exits, and exports the MLSAS_TEST_*
# variables that internal/testenv reads. It defines say and die, and
# leaves WORK (a work directory) and LOG (its log file) set.
#
# Environment: MLSAS_KEEP=1 keeps the work directory (and the tests keep
# their databases in it: internal/testenv); MLSAS_TEST_PG_OPTIONS
# adds PostgreSQL server options (e.g. "-c shared_preload_libraries=pg_stat_statements"
# to see where the database spends its time).
SYNAPSE_VERSION=1.163.2
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/mls-appservice
VENV=$CACHE/synapse-$SYNAPSE_VERSION
WORK=$(mktemp -d "${TMPDIR:-/tmp}/mls-appservice-test.XXXXXX")
LOG=$WORK.log
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
export PATH=/usr/local/go/bin:$PATH

say() { echo "scripts/test: $*" | tee -a "$LOG" >&2; }
die() { say "ERROR: $*"; echo "0 passed, 1 failed"; exit 1; }
: >"$LOG"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

SYNAPSE_PID=
cleanup() {
	local rc=$?
	if [[ -n $SYNAPSE_PID ]]; then kill "$SYNAPSE_PID" 2>/dev/null && wait "$SYNAPSE_PID" 2>/dev/null || true; fi
	if [[ -f $WORK/pg/PG_VERSION ]]; then as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true; fi
	if [[ -f $WORK/synapse/homeserver.log ]]; then cp "$WORK/synapse/homeserver.log" "$WORK.synapse.log"; fi
	if [[ ${MLSAS_KEEP:-} != 1 ]]; then rm -rf "$WORK"; fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# initdb refuses to run as root.
if [[ $(id -u) == 0 ]]; then
	as_pg() { runuser -u postgres -- "$@"; }
	chown postgres "$WORK"
else
	as_pg() { "$@"; }
fi

# --- PostgreSQL 15 -----------------------------------------------------------
[[ -x $PG_BIN/initdb ]] || die "PostgreSQL 15 binaries not found in $PG_BIN (apt-get install postgresql-15)"
PG_PORT=$(free_port)
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -U postgres --auth=trust -E UTF8 >>"$LOG" 2>&1 || die "initdb failed (see $LOG)"
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/server.log" -w -t 60 \
	-o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $WORK/pg -c fsync=off -c synchronous_commit=off -c max_connections=200 ${MLSAS_TEST_PG_OPTIONS:-}" \
	start >>"$LOG" 2>&1 || die "PostgreSQL did not start (see $LOG and $WORK/pg/server.log)"
export MLSAS_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
say "PostgreSQL 15 on 127.0.0.1:$PG_PORT"

# --- Synapse -----------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import synapse' 2>/dev/null; then
	say "installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
	start=$SECONDS
	rm -rf "$VENV"
	mkdir -p "$CACHE"
	if ! { python3 -m venv "$VENV" && timeout 900 "$VENV/bin/pip" install --disable-pip-version-check -q \
		"matrix-synapse==$SYNAPSE_VERSION"; } >>"$LOG" 2>&1; then
		rm -rf "$VENV"
		echo "############################################################" >&2
		echo "# INSTALLING SYNAPSE $SYNAPSE_VERSION FAILED: the end-to-end tests cannot run." >&2
		echo "# See $LOG. Nothing was skipped: this run FAILS." >&2
		echo "############################################################" >&2
		echo "0 passed, 1 failed"
		exit 1
	fi
	say "installed Synapse in $((SECONDS - start))s"
fi

# --- the client-server façade's SDK bots (csapi/testdata) ----------------------
# matrix-nio and its dependencies, pinned by requirements.txt, in a cached
# virtualenv named after the pins; matrix-bot-sdk pinned by package-lock.json.
NIO_REQS=$ROOT/csapi/testdata/nio/requirements.txt
NIO_VENV=$CACHE/matrix-nio-$(sha256sum "$NIO_REQS" | cut -c1-12)
if [[ ! -x $NIO_VENV/bin/python ]] || ! "$NIO_VENV/bin/python" -c 'import nio' 2>/dev/null; then
	say "installing matrix-nio ($NIO_REQS) into $NIO_VENV"
	rm -rf "$NIO_VENV"
	mkdir -p "$CACHE"
	{ python3 -m venv "$NIO_VENV" && timeout 600 "$NIO_VENV/bin/pip" install --disable-pip-version-check -q \
		-r "$NIO_REQS"; } >>"$LOG" 2>&1 || { rm -rf "$NIO_VENV"; die "installing matrix-nio failed (see $LOG)"; }
fi
export MLSAS_TEST_NIO_PYTHON=$NIO_VENV/bin/python
BOTSDK=$ROOT/csapi/testdata/botsdk
if [[ ! -f $BOTSDK/node_modules/.package-lock.json || $BOTSDK/package-lock.json -nt $BOTSDK/node_modules/.package-lock.json ]]; then
	say "npm ci --prefix ${BOTSDK#"$ROOT"/}"
	(cd "$ROOT" && npm ci --no-audit --no-fund --prefix "$BOTSDK") >>"$LOG" 2>&1 || die "npm ci in $BOTSDK failed (see $LOG)"
fi

SYNAPSE_PORT=$(free_port)
AS_PORT=$(free_port)
BIN=$WORK/bin/mls-appservice
(cd "$ROOT" && go build -o "$BIN" ./cmd/mls-appservice) >>"$LOG" 2>&1 || die "go build failed (see $LOG)"

# The service's configuration: the compose one with local addresses, then
# -g writes the registration and puts the tokens into it.
"$VENV/bin/python" "$ROOT/scripts/render-config.py" appservice "$ROOT/deploy/mls-appservice/config.yaml" \
	"$WORK/config.yaml" "$SYNAPSE_PORT" "$AS_PORT" "$MLSAS_TEST_POSTGRES" >>"$LOG" 2>&1 \
	|| die "rendering config.yaml failed (see $LOG)"
"$BIN" -g -c "$WORK/config.yaml" -r "$WORK/registration.yaml" >>"$LOG" 2>&1 || die "mls-appservice -g failed (see $LOG)"

mkdir -p "$WORK/synapse"
"$VENV/bin/python" "$ROOT/scripts/render-config.py" synapse "$ROOT/deploy/synapse/homeserver.yaml" \
	"$WORK/synapse/homeserver.yaml" "$WORK/synapse" "$SYNAPSE_PORT" "$WORK/registration.yaml" >>"$LOG" 2>&1 \
	|| die "rendering homeserver.yaml failed (see $LOG)"
start=$SECONDS
"$VENV/bin/python" -m synapse.app.homeserver -c "$WORK/synapse/homeserver.yaml" >"$WORK/synapse/homeserver.log" 2>&1 &
SYNAPSE_PID=$!
for _ in $(seq 1 240); do
	if curl -fsS "http://127.0.0.1:$SYNAPSE_PORT/_matrix/client/versions" >/dev/null 2>&1; then break; fi
	kill -0 "$SYNAPSE_PID" 2>/dev/null || { tail -30 "$WORK/synapse/homeserver.log" >&2; die "Synapse exited during start-up"; }
	sleep 0.5
done
curl -fsS "http://127.0.0.1:$SYNAPSE_PORT/_matrix/client/versions" >/dev/null || die "Synapse did not answer within 120s"
say "Synapse $SYNAPSE_VERSION on 127.0.0.1:$SYNAPSE_PORT (started in $((SECONDS - start))s)"

export MLSAS_TEST_SYNAPSE_URL="http://127.0.0.1:$SYNAPSE_PORT"
export MLSAS_TEST_CONFIG=$WORK/config.yaml
export MLSAS_TEST_REGISTRATION=$WORK/registration.yaml
# For the private homeservers tests start themselves (testenv.StartSynapse).
export MLSAS_TEST_SYNAPSE_PYTHON=$VENV/bin/python
export MLSAS_TEST_SYNAPSE_TEMPLATE=$ROOT/deploy/synapse/homeserver.yaml

