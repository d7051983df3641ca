#!/usr/bin/env bash
# `make bench-peers`: this gateway beside Portkey and LiteLLM, through the peer harness (outside the
# repository: BENCH_PEERS, default ../shared/bench-peers). Starts this gateway's targets, runs the
# harness's rounds, stops every target by its process group, and copies the report to bench/results/.
#
# Environment (defaults in brackets):
#   BENCH_PEERS [../shared/bench-peers]  ROUNDS [3]  WORKERS ["1 2"] (one target per count; "" for none)
#   GATEWAYS [the installed ones of "litellm portkey"; "" for none]
#   BASE_REV [""]  a git revision also run as its own target (a temporary git worktree), for
#                  before/after from one run; BASE_WORKERS ["2"]
#   PG [0]         1: one more instance (2 workers) on PostgreSQL + Redis (a throw-away database)
#   PG_PAIR [0]    1: two instances (2 workers each) on one throw-away PostgreSQL + Redis behind nginx
#   PG_POOL_SIZE [8]  KYMA_DATABASE_POOL_SIZE of those instances: with PG=1 and PG_PAIR=1 they hold
#                  up to 6 x 8 = 48 connections; the server's max_connections (100 by default) must fit them
#   REDIS_URL [redis://127.0.0.1:6379/0]; PostgreSQL is tests/pg.py's (127.0.0.1:5432, trust auth)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PEERS=${BENCH_PEERS:-$ROOT/../shared/bench-peers}
CACHE=$HOME/.cache/kyma-bench
if [ ! -x "$PEERS/run_reference.sh" ] || [ ! -x "$PEERS/kyma_target.sh" ]; then
  cat >&2 <<EOF
bench-peers: no peer harness at $PEERS (run_reference.sh, kyma_target.sh).
It lives outside this repository: point BENCH_PEERS at it, e.g.
  make bench-peers BENCH_PEERS=/path/to/bench-peers
then run its setup_reference.sh once (wrk, its venv, LiteLLM and Portkey under ~/.cache/kyma-bench).
EOF
  exit 2
fi
PEERS="$(cd "$PEERS" && pwd)"
if [ ! -x "${BENCH_PY:-$CACHE/bench-venv/bin/python}" ] || ! command -v wrk >/dev/null 2>&1; then
  echo "bench-peers: the harness is not set up; run $PEERS/setup_reference.sh once (a few minutes)" >&2
  exit 2
fi
if [ -z "${GATEWAYS+set}" ]; then  # the installed peers, unless GATEWAYS says which
  GATEWAYS=""
  [ -x "$CACHE/litellm-venv/bin/litellm" ] && GATEWAYS="litellm"
  [ -d "$CACHE/portkey/node_modules/@portkey-ai/gateway" ] && GATEWAYS="$GATEWAYS portkey"
  [ -z "$GATEWAYS" ] && echo "bench-peers: neither LiteLLM nor Portkey is installed (setup_reference.sh): this gateway only"
fi
ROUNDS=${ROUNDS:-3} WORKERS=${WORKERS-"1 2"} BASE_REV=${BASE_REV:-} BASE_WORKERS=${BASE_WORKERS:-"2"}
PG=${PG:-0} PG_PAIR=${PG_PAIR:-0} PG_POOL_SIZE=${PG_POOL_SIZE:-8} REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6379/0}
PY="$ROOT/.venv/bin/python"
W="$(mktemp -d -t kyma-peers.XXXXXX)"
echo "bench-peers: work dir $W"
# 16 consecutive free ports, released for the harness's servers, which bind them by number.
BASE_PORT=$(cd "$ROOT" && "$PY" -c 'from kyma.procs import listen_consecutive
socks = listen_consecutive(16); print(socks[0].getsockname()[1]); [s.close() for s in socks]')
UPSTREAM_PORT=$BASE_PORT; NEXT=$((BASE_PORT + 1))
export UPSTREAM_PORT
PAIR_PID="" BASE_TREE=""

cleanup() {
  local f pid
  if [ -n "$PAIR_PID" ]; then kill -TERM "$PAIR_PID" 2>/dev/null || true; fi
  for f in "$W"/kyma-*/pid; do  # each launcher runs in its own process group
    [ -f "$f" ] || continue
    pid=$(cat "$f"); kill -TERM -- -"$pid" 2>/dev/null || true
  done
  for f in "$W"/kyma-*/pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f")
    for _ in $(seq 1 75); do kill -0 -- -"$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- -"$pid" 2>/dev/null || true
  done
  if [ -n "$PAIR_PID" ]; then
    for _ in $(seq 1 100); do kill -0 "$PAIR_PID" 2>/dev/null || break; sleep 0.2; done
    kill -KILL "$PAIR_PID" 2>/dev/null || true
  fi
  if [ -f "$W/pg-created" ]; then  # throw-away databases and Redis prefixes
    (cd "$ROOT" && "$PY" - "$W/pg-created" <<'EOF') || echo "bench-peers: could not drop a database; see $W/pg-created" >&2
import sys
from tests.pg import delete_redis_prefix, drop_database
for line in open(sys.argv[1]):
    url, prefix = line.split()
    drop_database(url)
    delete_redis_prefix(prefix)
EOF
  fi
  if [ -n "$BASE_TREE" ]; then git -C "$ROOT" worktree remove --force "$BASE_TREE" 2>/dev/null || true; fi
}
trap cleanup EXIT INT TERM

add_target() { # NAME PROJECT_DIR WORKERS: start one gateway through the harness, keep its target
  local name=$1 project=$2 workers=$3
  "$PEERS/kyma_target.sh" "$project" "$W" "$NEXT" "$workers" "$name" >"$W/$name.json"
  echo "bench-peers: $name on 127.0.0.1:$NEXT"
  NEXT=$((NEXT + 1))
}

new_pg() { # a throw-away PostgreSQL database and Redis prefix: "URL PREFIX" (dropped at exit)
  local made need=$1
  # Another user of the server can leave too few connections: say so now, not as errors in the report.
  (cd "$ROOT" && "$PY" - "$need" <<'EOF') >&2 || true
import sys
from tests.pg import _admin
with _admin() as admin:
    total = int(admin.execute("SHOW max_connections").fetchone()[0])
    used = admin.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0]
if total - used < int(sys.argv[1]):
    print(f"bench-peers: WARNING: PostgreSQL has {total - used} of {total} connections free and this target "
          f"may use {sys.argv[1]}: expect 'too many clients' errors (lower PG_POOL_SIZE or free some)")
EOF
  made=$(cd "$ROOT" && "$PY" -c 'from tests.pg import create_database, new_redis_prefix; print(create_database("bench_"), new_redis_prefix())')
  echo "$made" >>"$W/pg-created"
  echo "$made"
}

for w in $WORKERS; do add_target "kyma-w$w" "$ROOT" "$w"; done

if [ -n "$BASE_REV" ]; then
  rev=$(git -C "$ROOT" rev-parse --short "$BASE_REV")
  BASE_TREE="$W/base-$rev"
  git -C "$ROOT" worktree add --detach "$BASE_TREE" "$BASE_REV" >/dev/null
  ln -s "$(readlink -f "$ROOT/.venv")" "$BASE_TREE/.venv"  # same dependencies; only the code differs
  for w in $BASE_WORKERS; do add_target "kyma-$rev-w$w" "$BASE_TREE" "$w"; done
fi

if [ "$PG" = 1 ]; then
  read -r url prefix <<<"$(new_pg $((2 * PG_POOL_SIZE)))"
  TARGET_DATABASE_URL=$url TARGET_REDIS_URL=$REDIS_URL KYMA_REDIS_PREFIX=$prefix KYMA_DATABASE_POOL_SIZE=$PG_POOL_SIZE \
    add_target kyma-pg-w2 "$ROOT" 2
fi

if [ "$PG_PAIR" = 1 ]; then
  command -v nginx >/dev/null 2>&1 || { echo "bench-peers: PG_PAIR=1 needs nginx (apt-get install -y -q nginx)" >&2; exit 2; }
  read -r url prefix <<<"$(new_pg $((4 * PG_POOL_SIZE)))"
  TARGET_DATABASE_URL=$url TARGET_REDIS_URL=$REDIS_URL KYMA_REDIS_PREFIX=$prefix KYMA_DATABASE_POOL_SIZE=$PG_POOL_SIZE \
    setsid "$PY" "$ROOT/bench/pg_pair.py" "$PEERS" "$W" "$NEXT" $((NEXT + 1)) $((NEXT + 2)) 2 \
    >"$W/kyma-pg-pair.json" 2>"$W/pg_pair.err" &
  PAIR_PID=$!
  NEXT=$((NEXT + 3))
  for _ in $(seq 1 300); do  # both instances and nginx: up to a minute
    [ -s "$W/kyma-pg-pair.json" ] && break
    kill -0 "$PAIR_PID" 2>/dev/null || { cat "$W/pg_pair.err" >&2; exit 1; }
    sleep 0.2
  done
  [ -s "$W/kyma-pg-pair.json" ] || { echo "bench-peers: the PostgreSQL pair did not start" >&2; exit 1; }
  echo "bench-peers: kyma-pg-pair-w2 (two instances behind nginx)"
fi

"$PY" -c 'import json, sys; json.dump([t for f in sys.argv[2:] for t in json.load(open(f))], open(sys.argv[1], "w"), indent=1)' \
  "$W/targets.json" "$W"/kyma-*.json
GATEWAYS="$GATEWAYS" EXTRA_TARGETS="$W/targets.json" WORK="$W/run" ROUNDS="$ROUNDS" "$PEERS/run_reference.sh"

mkdir -p "$ROOT/bench/results"
stamp=$(date -u +%Y%m%d-%H%M%S)
cp "$W/run/report.md" "$ROOT/bench/results/peers-$stamp.md"
cp "$W/run/report.md" "$ROOT/bench/results/peers-latest.md"
cp "$W/run/results.jsonl" "$ROOT/bench/results/peers-$stamp.jsonl"
echo "bench-peers: report in bench/results/peers-$stamp.md (logs in $W)"
