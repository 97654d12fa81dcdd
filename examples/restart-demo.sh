#!/usr/bin/env bash
# The main job, end to end: a stock Python socketserver (SO_REUSEADDR off, like most
# hand-written servers) is killed with TIME_WAIT sockets on its port and started again at
# once: first plainly (it fails for 60 s), then under `reuse run` (it comes back at once).
#
#   cargo build --release && examples/restart-demo.sh [PORT]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
reuse=${REUSE_BIN:-$here/../target/release/reuse}
[ -x "$reuse" ] || { echo "build first: cargo build --release" >&2; exit 1; }
py=$(python3 -c 'import sys; print(sys.executable)')
app=$here/python/app.py
port=${1:-$(( 21000 + RANDOM % 2000 ))}

ask() { # three HTTP/1.0 requests: the server closes first, leaving TIME_WAIT on its port
  for _ in 1 2 3; do curl -s -0 --max-time 2 "http://127.0.0.1:$1/" >/dev/null || true; done
}
ready() { # waits up to 3 s for an answer
  for _ in $(seq 60); do curl -s -0 --max-time 1 "http://127.0.0.1:$1/" >/dev/null && return 0; sleep 0.05; done
  return 1
}
cycle() { # $1 = label, $2 = port, $3... = how to start the server
  local label=$1 p=$2; shift 2
  PORT=$p "$@" >/dev/null 2>&1 & local pid=$!
  ready "$p" || { echo "$label: the first instance did not start"; kill "$pid" 2>/dev/null; return 1; }
  ask "$p"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  local tw; tw=$(ss -tanH state time-wait "( sport = :$p )" | wc -l)
  local t0; t0=$(date +%s%N)
  PORT=$p "$@" >"/tmp/reuse-demo-$p.log" 2>&1 & pid=$!
  if ready "$p"; then
    echo "$label: killed with $tw TIME_WAIT socket(s) on :$p, back in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
  else
    echo "$label: killed with $tw TIME_WAIT socket(s) on :$p, restart FAILED: $(grep -m1 -o 'Address already in use' "/tmp/reuse-demo-$p.log" || tail -1 "/tmp/reuse-demo-$p.log")"
  fi
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  rm -f "/tmp/reuse-demo-$p.log"
}

cycle "without reuse" "$port" "$py" "$app"
cycle "under reuse  " "$((port + 1))" "$reuse" run -- "$py" "$app"
