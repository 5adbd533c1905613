#!/usr/bin/env bash
# Benchmark Strait beside nginx, both as reverse proxies in front of the same
# fast origin (a second nginx returning a 1 KiB body), and print a Markdown
# table with the ratios strait/nginx. See bench/README.md for the method.
#
# Usage: bench/run.sh            (from anywhere; needs root for apt-get)
#
# Knobs (environment):
#   ROUNDS=3          load-test rounds; the two proxies alternate in each round
#   DURATION=10s      length of one wrk run
#   CONNS=50          wrk connections            WRK_THREADS=1  wrk threads
#   N=2000            sequential keep-alive requests for callgrind/strace/DHAT
#   WARMUP=200        requests sent before the counters are zeroed
#   DHAT_BASE=500     DHAT runs DHAT_BASE and DHAT_BASE+N requests; the
#                     difference / N is reported
#   IDLE_CONNS=10000  idle keep-alive connections for the memory test
#   SKIP_INSTALL=1    don't apt-get install missing tools
#   SKIP_BUILD=1      don't run `cargo build --release`; use the existing binary
#   STRAIT_BIN=path   strait binary (default: target/release/strait)
#   PHASES="load latency strace idle callgrind dhat"   which measurements to run
#                     (MODE=balance: default "load callgrind"; only those two)
#   RATE=5000         latency phase: requests/s of the open-loop generator
#                     (bench/loadgen, built when missing), latency measured
#                     from each request's scheduled time; ROUNDS rounds
#   LAT_DURATION=30s  latency phase: length of one measured run (after 2 s of
#                     warm-up in the same run)
#   LAT_CONNS=50      latency phase: keep-alive connections, requests spread
#                     evenly over them
#   LOADGEN_BIN=path  the generator (default bench/loadgen/target/release/strait-loadgen)
#   PROXY_CPU=0 LOAD_CPU=1   cores for the proxy, and for wrk + origin
#   VG_TIMEOUT=600    seconds allowed for one valgrind step
#   MODE=single       upstream layout: one origin, strait vs nginx.
#                     MODE=balance: ORIGINS origins, one strait row per
#                     balancing algorithm in ALGOS plus nginx (round robin);
#                     table in bench/results/balance.md
#   ALGOS="round_robin weighted random least_request peak_ewma ring maglev"
#                     (MODE=balance) algorithms; one the binary refuses
#                     (`strait check` fails) is a skipped row with its error
#   ORIGINS=4         (MODE=balance) number of origins
#   BALANCE_PATHS=64  (MODE=balance) wrk and the sequential client cycle over
#                     the paths /p/0 .. /p/63 (1: every request is GET /)
#   MODE=protocols    TLS and HTTP/2 beside nginx (load only): SCENARIOS over
#                     one origin; table in bench/results/protocols.md
#   SCENARIOS="https handshake h2 h2c"   (MODE=protocols) which to run:
#                     https: wrk over TLS with keep-alive; handshake: wrk over
#                     TLS with "Connection: close" (a full handshake per
#                     request); h2: h2load over TLS (ALPN h2); h2c: h2load,
#                     cleartext HTTP/2 with prior knowledge
#   H2_CONNS=10 H2_STREAMS=10   (MODE=protocols) h2load -c and -m
#   HANDSHAKE_CONNS=20          (MODE=protocols) wrk -c for "handshake"
#   MODE=floods       connection floods beside nginx: CPU and RSS under
#                     partial-preface and idle floods, RSS before, during and
#                     after a BIG_CONNS flood; table in bench/results/floods.md
#   FLOODS="partial h1 h2 big"  (MODE=floods) which floods: partial: each
#                     connection sends the byte P and waits; h1: idle HTTP/1.1
#                     keep-alive after one request; h2: idle h2c after the
#                     preface and SETTINGS; big: BIG_CONNS h1 connections, then
#                     RSS each second for BIG_AFTER s after they all closed
#   FLOOD_CONNS=2000  (MODE=floods) connections of the partial, h1, h2 floods
#   FLOOD_HOLD=5      (MODE=floods) seconds CPU is measured while a flood sits
#   BIG_CONNS=20000 BIG_AFTER=60   (MODE=floods) the big flood
#   MODE=policies     the cost per request of each policy middleware under
#                     callgrind (PHASES=callgrind only): one strait row per
#                     policy in POLICIES (a route through that one
#                     middleware; "none": no middleware) and nginx rows for
#                     the ones nginx has (allow, auth_basic, limit_req,
#                     auth_request, gzip), every request carrying the same
#                     credentials; table in bench/results/policies.md; the
#                     configurations are in bench/policies.sh
#   POLICIES="none ip_filter request_limits cors basic_auth api_key jwt rate_limit forward_auth compress"
#                     (MODE=policies) which policies
#   STRAIT_STANDIN=nginx  A/A test of this harness: the "strait" column runs a
#                     second nginx proxy instead of strait (ratios should be ~1)
#   KEEP_TMP=1        keep the temporary directory (configs, logs) on exit
#   QUIET_WAIT=0      before each load round, wait up to this many seconds for
#                     the machine to be idle (under 10% of a core busy for 2 s)
#
# Output: the table on stdout and in bench/results/latest.md; raw outputs of
# every tool in bench/results/raw/ (ignored by git).
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-50}
WRK_THREADS=${WRK_THREADS:-1}
N=${N:-2000}
WARMUP=${WARMUP:-200}
DHAT_BASE=${DHAT_BASE:-500}
IDLE_CONNS=${IDLE_CONNS:-10000}
SKIP_INSTALL=${SKIP_INSTALL:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
STRAIT_BIN=${STRAIT_BIN:-$ROOT/target/release/strait}
MODE=${MODE:-single}
if [[ $MODE == balance ]]; then
  PHASES=${PHASES:-load callgrind}
elif [[ $MODE == protocols ]]; then
  PHASES=load
elif [[ $MODE == floods ]]; then
  PHASES=floods
elif [[ $MODE == policies ]]; then
  PHASES=callgrind
else
  PHASES=${PHASES:-load latency strace idle callgrind dhat}
fi
RATE=${RATE:-5000}
LAT_DURATION=${LAT_DURATION:-30s}
LAT_CONNS=${LAT_CONNS:-50}
LOADGEN_BIN=${LOADGEN_BIN:-$BENCH_DIR/loadgen/target/release/strait-loadgen}
ALGOS=${ALGOS:-round_robin weighted random least_request peak_ewma ring maglev}
ORIGINS=${ORIGINS:-4}
BALANCE_PATHS=${BALANCE_PATHS:-64}
SCENARIOS=${SCENARIOS:-https handshake h2 h2c}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
HANDSHAKE_CONNS=${HANDSHAKE_CONNS:-20}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
VG_TIMEOUT=${VG_TIMEOUT:-600}
KEEP_TMP=${KEEP_TMP:-0}
QUIET_WAIT=${QUIET_WAIT:-0}
STRAIT_STANDIN=${STRAIT_STANDIN:-}
FLOODS=${FLOODS:-partial h1 h2 big}
FLOOD_CONNS=${FLOOD_CONNS:-2000}
FLOOD_HOLD=${FLOOD_HOLD:-5}
BIG_CONNS=${BIG_CONNS:-20000}
BIG_AFTER=${BIG_AFTER:-60}
POLICIES=${POLICIES:-none ip_filter request_limits cors basic_auth api_key jwt rate_limit forward_auth compress}
# MODE=policies: the one-line nginx directives of the proxy being started
NGINX_HTTP_EXTRA="" NGINX_SERVER_EXTRA="" NGINX_LOCATION_EXTRA=""
# shellcheck source=bench/policies.sh
source "$(dirname "${BASH_SOURCE[0]}")/policies.sh"
# MODE=single's DHAT row needs a strait on the system allocator (DHAT sees
# only malloc and free, not jemalloc's); built by build_strait
SYSALLOC_BIN=${SYSALLOC_BIN:-$ROOT/target/release/strait-sysalloc}

PROXIES=(strait nginx)
BT=(python3 "$BENCH_DIR/benchtool.py")
RESULTS_DIR=$BENCH_DIR/results
RAW=$RESULTS_DIR/raw

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
has_phase() { [[ " $PHASES " == *" $1 "* ]]; }

# Extra arguments for wrk and `benchtool.py seq`, and the origins' status
# location: all empty in MODE=single, so that its commands and configs are
# exactly what they were before MODE=balance existed.
WRK_ARGS=()
SEQ_ARGS=()
ORIGIN_STATUS=""
case $MODE in
  single)
    for v in RATE LAT_CONNS; do
      [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive number"
    done
    [[ $LAT_DURATION =~ ^[0-9]+(\.[0-9]+)?(s|ms)$ ]] || die "LAT_DURATION=$LAT_DURATION is not a duration like 30s"
    for ph in $PHASES; do
      case $ph in load | latency | strace | idle | callgrind | dhat) ;; *) die "unknown phase $ph" ;; esac
    done
    ;;
  balance)
    [[ -z $STRAIT_STANDIN ]] || die "STRAIT_STANDIN is for MODE=single only"
    [[ $ORIGINS =~ ^[1-9][0-9]*$ ]] || die "ORIGINS=$ORIGINS is not a positive number"
    [[ $BALANCE_PATHS =~ ^[1-9][0-9]*$ ]] || die "BALANCE_PATHS=$BALANCE_PATHS is not a positive number"
    for algo in $ALGOS; do
      [[ $algo =~ ^[a-z0-9_]+$ ]] || die "bad algorithm name '$algo' in ALGOS"
    done
    kept=""
    for ph in $PHASES; do
      case $ph in
        load | callgrind) kept+="$ph " ;;
        latency | strace | idle | dhat) log "MODE=balance: phase $ph is not run in this mode (only load and callgrind)" ;;
        *) die "unknown phase $ph" ;;
      esac
    done
    PHASES=${kept% }
    [[ -n $PHASES ]] || die "MODE=balance needs PHASES with load and/or callgrind"
    SEQ_ARGS=("$BALANCE_PATHS")
    # counts the requests of each origin, so that the split shows
    ORIGIN_STATUS="location = /__bench/status { stub_status; }"
    ;;
  protocols)
    [[ -z $STRAIT_STANDIN ]] || die "STRAIT_STANDIN is for MODE=single only"
    for sc in $SCENARIOS; do
      case $sc in https | handshake | h2 | h2c) ;; *) die "unknown scenario '$sc' in SCENARIOS" ;; esac
    done
    ;;
  floods)
    [[ -z $STRAIT_STANDIN ]] || die "STRAIT_STANDIN is for MODE=single only"
    for fl in $FLOODS; do
      case $fl in partial | h1 | h2 | big) ;; *) die "unknown flood '$fl' in FLOODS" ;; esac
    done
    for v in FLOOD_CONNS FLOOD_HOLD BIG_CONNS BIG_AFTER; do
      [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "$v=${!v} is not a positive number"
    done
    ((FLOOD_HOLD <= 30 && BIG_AFTER <= 120)) || die "FLOOD_HOLD is at most 30 and BIG_AFTER at most 120 (seconds)"
    ;;
  policies)
    [[ -z $STRAIT_STANDIN ]] || die "STRAIT_STANDIN is for MODE=single only"
    for p in $POLICIES; do
      case $p in none | ip_filter | request_limits | cors | basic_auth | api_key | jwt | rate_limit | forward_auth | compress) ;;
        *) die "unknown policy '$p' in POLICIES" ;;
      esac
    done
    ;;
  *) die "unknown MODE=$MODE" ;;
esac

# ------------------------------------------------------------------ processes
# Every process this script starts is recorded here and stopped on exit.
PIDS=()
TMP=""

stop_pid() { # PID [seconds]: SIGTERM, then SIGKILL after the grace period
  local pid=$1 grace=${2:-10} i
  kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < grace * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "pid $pid did not stop after ${grace}s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do stop_pid "$pid" 5; done
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ $KEEP_TMP == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() { # remove a stopped PID from PIDS
  local keep=() p
  for p in "${PIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}

# ------------------------------------------------------------------ tools
install_tools() {
  local missing=() c
  local packages=(nginx wrk valgrind strace)
  for c in nginx wrk valgrind callgrind_control strace taskset python3; do
    command -v "$c" >/dev/null 2>&1 || missing+=("$c")
  done
  if [[ $MODE == protocols ]]; then
    packages+=(nghttp2-client openssl curl)
    for c in h2load openssl curl; do
      command -v "$c" >/dev/null 2>&1 || missing+=("$c")
    done
  fi
  ((${#missing[@]} == 0)) && return 0
  [[ $SKIP_INSTALL == 1 ]] && die "missing: ${missing[*]} (and SKIP_INSTALL=1)"
  log "installing ${packages[*]} (missing: ${missing[*]})"
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
  command -v python3 >/dev/null 2>&1 ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y python3
}

build_strait() {
  if [[ $STRAIT_STANDIN == nginx ]]; then
    log "STRAIT_STANDIN=nginx: the strait column is a second nginx (harness A/A test)"
    return 0
  fi
  if [[ $SKIP_BUILD != 1 ]]; then
    if [[ $MODE == single ]] && has_phase dhat; then
      log "cargo build --release --no-default-features (system allocator, for DHAT)"
      (cd "$ROOT" && cargo build --release --no-default-features &&
        cp target/release/strait "$SYSALLOC_BIN")
    fi
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release)
  fi
  [[ -x $STRAIT_BIN ]] || die "no strait binary at $STRAIT_BIN"
  local help
  help=$("$STRAIT_BIN" proxy --help 2>&1) ||
    die "'$STRAIT_BIN proxy --help' fails: this strait has no proxy command yet"
  [[ $help == *--listen* && $help == *--to* ]] ||
    die "'$STRAIT_BIN proxy --help' does not list --listen and --to: this strait has no proxy command yet"
}

# build_loadgen: the latency phase's generator, its own cargo package
build_loadgen() {
  has_phase latency || return 0
  if [[ ! -x $LOADGEN_BIN ]]; then
    log "cargo build --release --manifest-path bench/loadgen/Cargo.toml"
    cargo build --release --manifest-path "$BENCH_DIR/loadgen/Cargo.toml" ||
      die "could not build the load generator (bench/loadgen)"
  fi
  [[ -x $LOADGEN_BIN ]] || die "no load generator at $LOADGEN_BIN"
}

raise_nofile() {
  local hard
  ulimit -Hn 65536 2>/dev/null || true
  hard=$(ulimit -Hn)
  if [[ $hard == unlimited ]] || ((hard > 65536)); then hard=65536; fi
  ulimit -n "$hard"
  NOFILE=$(ulimit -n)
  if [[ $MODE == floods ]]; then
    # each proxy needs a descriptor per client connection, plus its upstream
    # connections (at most one per request in flight: 200 at a time) and a few
    # more; the flood client (one process per proxy) needs as many
    if ((BIG_CONNS + 500 > NOFILE)); then
      log "open-file limit is $NOFILE (hard; raising it needs CAP_SYS_RESOURCE): BIG_CONNS lowered from $BIG_CONNS to $((NOFILE - 500))"
      BIG_CONNS=$((NOFILE - 500))
    fi
    ((FLOOD_CONNS <= BIG_CONNS)) || FLOOD_CONNS=$BIG_CONNS
    # nginx starts closing idle keep-alive connections once fewer than 1/16
    # of worker_connections are free: give it that much room beyond the
    # flood (more than its descriptors allow is only a warning)
    WORKER_CONNECTIONS=$((BIG_CONNS + BIG_CONNS / 15 + 1024))
    return 0
  fi
  # strait's default max_connections is (limit - 100) / 2 (half, for the
  # upstream connections): more idle connections would be closed for room
  if ((IDLE_CONNS > (NOFILE - 100) / 2 - 50)); then
    log "open-file limit is $NOFILE: IDLE_CONNS lowered from $IDLE_CONNS to $(((NOFILE - 100) / 2 - 50)) (strait's default max_connections is $(((NOFILE - 100) / 2)))"
    IDLE_CONNS=$(((NOFILE - 100) / 2 - 50))
  fi
  if ((IDLE_CONNS + 1024 > NOFILE)); then
    log "open-file limit is $NOFILE: IDLE_CONNS lowered from $IDLE_CONNS to $((NOFILE - 1024))"
    IDLE_CONNS=$((NOFILE - 1024))
  fi
  # enough for every idle client plus upstream connections and some slack
  WORKER_CONNECTIONS=$((IDLE_CONNS + 1024))
}

# ------------------------------------------------------------------ helpers
pidtree() { "${BT[@]}" pidtree "$1"; }
cputicks() { "${BT[@]}" cputicks "$@"; }
rss() { "${BT[@]}" rss "$@"; }
wait_port() { "${BT[@]}" wait-port "$@"; } # PORT TIMEOUT [PID]
freeport() { "${BT[@]}" freeport "${1:-1}"; }

# strait_allocator BIN: which allocator a strait binary was built with
strait_allocator() {
  if grep -a -q _rjem_mallocx "$1"; then
    echo "jemalloc"
  elif grep -a -q mi_malloc_aligned "$1"; then
    echo "mimalloc"
  else
    echo "system (glibc malloc)"
  fi
}

RESULTS=""
emit() { # PROXY METRIC VALUE
  [[ $3 =~ ^-?[0-9.]+([eE][-+]?[0-9]+)?$ ]] || { log "not a number for $1 $2: '$3'"; return 0; }
  printf '{"proxy":"%s","metric":"%s","value":%s}\n' "$1" "$2" "$3" >>"$RESULTS"
}
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }

# Command prefixes that pin to a core (empty when there is one core). Arrays,
# not functions: a function run with & would be a subshell between $! and the
# process, and stopping $! would leave the process behind.
CPU_PIN=0
PIN_PROXY=()
PIN_LOAD=()

# ------------------------------------------------------------------ nginx
BODY=$(printf 'x%.0s' $(seq 1024))

nginx_conf() { # TEMPLATE PREFIX PORT MASTER_PROCESS -> writes PREFIX/nginx.conf
  local tpl=$1 prefix=$2 port=$3 master=$4 servers="" p
  mkdir -p "$prefix"
  for p in "${ORIGIN_PORTS[@]:-0}"; do servers+="server 127.0.0.1:$p; "; done
  sed -e "s#@PREFIX@#$prefix#g" -e "s#@PORT@#$port#g" \
    -e "s#@UPSTREAM_SERVERS@#$servers#g" -e "s#@MASTER_PROCESS@#$master#g" \
    -e "s#@NOFILE@#$NOFILE#g" -e "s#@WORKER_CONNECTIONS@#$WORKER_CONNECTIONS#g" \
    -e "s#@BODY@#$BODY#g" -e "s#@ORIGIN_STATUS@#$ORIGIN_STATUS#g" \
    -e "s#@PORT2@#${PORT2:-}#g" -e "s#@CERT@#${CERT:-}#g" -e "s#@KEY@#${KEY:-}#g" \
    -e "s#@HTTP_EXTRA@#$NGINX_HTTP_EXTRA#g" -e "s#@SERVER_EXTRA@#$NGINX_SERVER_EXTRA#g" \
    -e "s#@LOCATION_EXTRA@#$NGINX_LOCATION_EXTRA#g" "$tpl" >"$prefix/nginx.conf"
}

start_origins() {
  # MODE=single: one origin; MODE=balance: ORIGINS of them, all from the same
  # template, all pinned to the load core. ORIGIN_PORT/ORIGIN_PID: the first.
  local port prefix i count=1
  [[ $MODE == balance ]] && count=$ORIGINS
  ORIGIN_PORTS=()
  ORIGIN_PIDS=()
  for ((i = 1; i <= count; i++)); do
    port=$(freeport)
    prefix=$TMP/origin
    ((count == 1)) || prefix=$TMP/origin$i
    nginx_conf "$BENCH_DIR/nginx/origin.conf.in" "$prefix" "$port" on
    ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" \
      >"$prefix/stdout.log" 2>&1 &
    PIDS+=($!)
    wait_port "$port" 30 "$!" || die "origin did not start: $(tail -3 "$prefix/error.log")"
    ORIGIN_PORTS+=("$port")
    ORIGIN_PIDS+=("$!")
    log "origin nginx on 127.0.0.1:$port (pid $!)"
  done
  ORIGIN_PORT=${ORIGIN_PORTS[0]}
  ORIGIN_PID=${ORIGIN_PIDS[0]}
}

# strait_conf ALGO PORT FILE: the MODE=balance configuration of one algorithm
strait_conf() {
  local algo=$1 port=$2 file=$3 i=0 p
  {
    echo "# generated by bench/run.sh (MODE=balance, balance = \"$algo\")"
    echo "[server]"
    echo "watch_config = false"
    echo ""
    echo "[admin]"
    echo "enabled = false"
    echo ""
    echo "[[listeners]]"
    echo "address = \"127.0.0.1:$port\""
    echo ""
    echo "[upstreams.origins]"
    echo "balance = \"$algo\""
    case $algo in ring | maglev) echo 'hash_key = "path"' ;; esac
    echo "endpoints = ["
    for p in "${ORIGIN_PORTS[@]}"; do
      i=$((i + 1))
      if [[ $algo == weighted ]]; then
        echo "  { address = \"127.0.0.1:$p\", weight = $i },"
      else
        echo "  \"127.0.0.1:$p\","
      fi
    done
    echo "]"
    echo ""
    echo "# the route of 'strait proxy' (MODE=single): catch-all, request_id"
    echo "[[routes]]"
    echo "name = \"all\""
    echo "middlewares = [\"request_id\"]"
    echo "upstream = \"origins\""
  } >"$file"
}

# strait_protocols_conf PORT PORT2 FILE: the MODE=protocols configuration:
# a TLS listener on PORT (ALPN h2 and http/1.1) and a cleartext one on PORT2
# (HTTP/2 prior knowledge is detected on every cleartext listener), the route
# of `strait proxy` (catch-all, request_id) to the origin
strait_protocols_conf() {
  local port=$1 port2=$2 file=$3
  cat >"$file" <<TOML
# generated by bench/run.sh (MODE=protocols)
[server]
watch_config = false

[admin]
enabled = false

[[listeners]]
name = "tls"
address = "127.0.0.1:$port"

[listeners.tls]
min_version = "1.2"

[[listeners.tls.certificates]]
cert = "$CERT"
key = "$KEY"

[[listeners]]
name = "h2c"
address = "127.0.0.1:$port2"

[upstreams.origin]
endpoints = ["127.0.0.1:$ORIGIN_PORT"]

[[routes]]
name = "all"
middlewares = ["request_id"]
upstream = "origin"
TOML
}

# strait_floods_conf PORT ADMIN_PORT FILE: the MODE=floods configuration: the
# route of `strait proxy` on one cleartext listener (HTTP/1.1 and h2c prior
# knowledge), the admin API (for the refused-connections counter), every
# timeout and limit at its default but max_connections: the default, half the
# descriptor limit, leaves room for an upstream connection per client
# connection, which these idle floods do not need
strait_floods_conf() {
  local port=$1 admin=$2 file=$3
  cat >"$file" <<TOML
# generated by bench/run.sh (MODE=floods)
[server]
watch_config = false
max_connections = $((BIG_CONNS + 200))

[admin]
listen = "127.0.0.1:$admin"

[[listeners]]
address = "127.0.0.1:$port"

[upstreams.origin]
endpoints = ["127.0.0.1:$ORIGIN_PORT"]

[[routes]]
name = "all"
middlewares = ["request_id"]
upstream = "origin"
TOML
}

# make_cert: one self-signed ECDSA P-256 certificate for localhost and
# 127.0.0.1, which both proxies serve (sets CERT and KEY)
make_cert() {
  CERT=$TMP/cert.pem
  KEY=$TMP/key.pem
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$KEY" -out "$CERT" -days 2 -subj "/CN=localhost" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >"$RAW/openssl.log" 2>&1 ||
    die "openssl could not make the test certificate: $(tail -3 "$RAW/openssl.log")"
}

# check_protocols NAME: one request per scenario against a running proxy
check_protocols() {
  local name=$1 p=${PROXY_PORT[$1]} p2=${PROXY_PORT2[$1]} out
  out=$(curl -sk --http1.1 -o /dev/null -w '%{http_code} %{size_download}' "https://127.0.0.1:$p/") || true
  [[ $out == "200 1024" ]] || die "$name: HTTPS/1.1 request failed ($out)"
  out=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "https://127.0.0.1:$p/") || true
  [[ $out == "200 1024 2" ]] || die "$name: HTTP/2 over TLS request failed ($out)"
  out=$(curl -s --http2-prior-knowledge -o /dev/null -w '%{http_code} %{size_download} %{http_version}' "http://127.0.0.1:$p2/") || true
  [[ $out == "200 1024 2" ]] || die "$name: h2c request failed ($out)"
}

# proto_round NAME SCENARIO ROUND: one load run, like load_round
proto_round() {
  local name=$1 sc=$2 round=$3 pids opids t0 t1 o0 o1 m0 m1 s0 s1 wt
  local rps p50 p99 reqs errs f foreign p tool=()
  local port=${PROXY_PORT[$name]} port2=${PROXY_PORT2[$name]}
  f=$RAW/$sc.$name.$round.txt
  case $sc in
    https) tool=(wrk -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "https://127.0.0.1:$port/") ;;
    handshake) tool=(wrk -t"$WRK_THREADS" -c"$HANDSHAKE_CONNS" -d"$DURATION" --latency
      -H "Connection: close" "https://127.0.0.1:$port/") ;;
    h2) tool=(h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" "https://127.0.0.1:$port/") ;;
    h2c) tool=(h2load -c"$H2_CONNS" -m"$H2_STREAMS" -D"$DURATION" "http://127.0.0.1:$port2/") ;;
  esac
  wait_quiet
  read -ra pids <<<"$(pidtree "${PROXY_PID[$name]}")"
  read -ra opids <<<"$(pidtree "$ORIGIN_PID")"
  m0=$("${BT[@]}" cpustat)
  t0=$(cputicks "${pids[@]}")
  o0=$(cputicks "${opids[@]}")
  s0=$(date +%s.%N)
  wt=$("${BT[@]}" timed "$f" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "${tool[@]}") ||
    die "${tool[0]} failed against $name ($sc): $(tail -3 "$f")"
  s1=$(date +%s.%N)
  t1=$(cputicks "${pids[@]}")
  o1=$(cputicks "${opids[@]}")
  m1=$("${BT[@]}" cpustat)
  [[ $round == warmup ]] && return 0
  if [[ ${tool[0]} == wrk ]]; then
    read -r rps p50 p99 reqs errs <<<"$("${BT[@]}" wrk "$f")"
    emit "$name" "${sc}_p50_ms" "$p50"
    emit "$name" "${sc}_p99_ms" "$p99"
  else
    read -r rps reqs errs <<<"$("${BT[@]}" h2load "$f")"
    p50="" p99=""
  fi
  ((reqs > 0)) || die "${tool[0]} completed no request against $name ($sc); see $f"
  foreign=$(calc "(($m1 - $m0) - ($t1 - $t0) - ($o1 - $o0) - $wt) * 100 / $CLK_TCK / ($s1 - $s0)")
  emit "$name" "${sc}_rps" "$rps"
  emit "$name" "${sc}_errors" "$errs"
  emit "$name" "${sc}_cpu_us" "$(calc "($t1 - $t0) * 1000000 / $CLK_TCK / $reqs")"
  emit "$name" "${sc}_cpu_busy" "$(calc "($t1 - $t0) * 100 / $CLK_TCK / ($s1 - $s0)")"
  emit "$name" "${sc}_foreign" "$foreign"
  log "$sc round $round $name: $rps req/s${p50:+, p50 ${p50}ms, p99 ${p99}ms}, proxy $((t1 - t0)) ticks, others ${foreign%.*}% of a core, $errs errors"
  ((errs == 0)) || log "WARNING: $name had $errs errors in $sc round $round (see $f)"
  return 0
}

phase_protocols() {
  local sc r i name order
  for sc in $SCENARIOS; do
    for name in "${PROXIES[@]}"; do
      log "warm-up: $sc 2s against $name"
      DURATION=2s proto_round "$name" "$sc" warmup >/dev/null 2>&1 ||
        die "warm-up of $sc against $name failed"
    done
    for ((r = 1; r <= ROUNDS; r++)); do
      order=("${PROXIES[@]}")
      if ! ((r % 2)); then
        order=()
        for ((i = ${#PROXIES[@]} - 1; i >= 0; i--)); do order+=("${PROXIES[i]}"); done
      fi
      for name in "${order[@]}"; do
        proto_round "$name" "$sc" "$r"
      done
    done
  done
}

# check_algos: `strait check` each algorithm's configuration; sets BALANCERS
# (the accepted ones) and writes a skip= line with the error for the others
check_algos() {
  local algo f out err
  BALANCERS=()
  for algo in $ALGOS; do
    f=$TMP/strait-$algo.check.toml
    out=$RAW/check.$algo.txt
    strait_conf "$algo" "$(freeport)" "$f"
    if "$STRAIT_BIN" check --config "$f" >"$out" 2>&1; then
      BALANCERS+=("$algo")
    else
      # the first error line, without the temporary file's path
      err=$(grep -v -E 'error\(s\)$' "$out" | grep -m1 . || true)
      err=${err#"$f":}
      [[ $err =~ ^[0-9]+:[0-9]+:\ (.*)$ ]] && err=${BASH_REMATCH[1]}
      [[ -n $err ]] || err="strait check failed (see $out)"
      log "skipping balance = \"$algo\": $err"
      printf 'skip=%s\t%s\n' "$algo" "$err" >>"$INFO"
    fi
  done
}

# start_proxy NAME HOW PORT [OUTFILE]  -> sets STARTED_PID
#   HOW: native | callgrind | dhat
start_proxy() {
  local name=$1 how=$2 port=$3 out=${4:-} cmd prefix vg=()
  case $how in
    native) ;;
    callgrind) vg=(valgrind --tool=callgrind --compress-strings=no --compress-pos=no --callgrind-out-file="$out" --log-file="$out.log") ;;
    dhat) vg=(valgrind --tool=dhat --dhat-out-file="$out.json" --log-file="$out.log") ;;
  esac
  case $name in
    strait-*)
      prefix=""
      if [[ $MODE == policies ]]; then
        strait_policy_conf "${name#strait-}" "$port" "$TMP/$name.$how.toml"
      else
        strait_conf "${name#strait-}" "$port" "$TMP/$name.$how.toml"
      fi
      cmd=("$STRAIT_BIN" --config "$TMP/$name.$how.toml" --workers 1)
      ;;
    strait)
      if [[ $STRAIT_STANDIN == nginx ]]; then
        prefix=$TMP/standin-$how
        nginx_conf "$BENCH_DIR/nginx/proxy.conf.in" "$prefix" "$port" \
          "$([[ $how == native ]] && echo on || echo off)"
        cmd=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log")
      elif [[ $MODE == protocols ]]; then
        strait_protocols_conf "$port" "$PORT2" "$TMP/strait-protocols.toml"
        cmd=("$STRAIT_BIN" --config "$TMP/strait-protocols.toml" --workers 1)
      elif [[ $MODE == floods ]]; then
        strait_floods_conf "$port" "$ADMIN_PORT" "$TMP/strait-floods.toml"
        cmd=("$STRAIT_BIN" --config "$TMP/strait-floods.toml" --workers 1)
      elif [[ $how == dhat && $(strait_allocator "$STRAIT_BIN") != system* ]]; then
        cmd=("$SYSALLOC_BIN" proxy --listen "127.0.0.1:$port" --to "127.0.0.1:$ORIGIN_PORT" --workers 1)
      else
        cmd=("$STRAIT_BIN" proxy --listen "127.0.0.1:$port" --to "127.0.0.1:$ORIGIN_PORT" --workers 1)
      fi
      ;;
    nginx-*)
      prefix=$TMP/$name-$how
      nginx_policy "${name#nginx-}" || die "nginx has no equivalent of ${name#nginx-}"
      nginx_conf "$BENCH_DIR/nginx/policies.conf.in" "$prefix" "$port" \
        "$([[ $how == native ]] && echo on || echo off)"
      NGINX_HTTP_EXTRA="" NGINX_SERVER_EXTRA="" NGINX_LOCATION_EXTRA=""
      cmd=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log")
      ;;
    nginx)
      prefix=$TMP/nginx-$how
      local tpl=$BENCH_DIR/nginx/proxy.conf.in
      [[ $MODE == protocols ]] && tpl=$BENCH_DIR/nginx/protocols.conf.in
      [[ $MODE == floods ]] && tpl=$BENCH_DIR/nginx/floods.conf.in
      # under valgrind: one process (master_process off) so that it is measured
      nginx_conf "$tpl" "$prefix" "$port" \
        "$([[ $how == native ]] && echo on || echo off)"
      cmd=(nginx -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log")
      ;;
  esac
  if [[ $how == native ]]; then
    ${PIN_PROXY[@]+"${PIN_PROXY[@]}"} "${cmd[@]}" >"$RAW/$name.$how.stdout.log" 2>&1 &
  else
    "${vg[@]}" "${cmd[@]}" >"$RAW/$name.$how.stdout.log" 2>&1 &
  fi
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  local timeout=30
  [[ $how == native ]] || timeout=$VG_TIMEOUT
  wait_port "$port" "$timeout" "$STARTED_PID" || {
    [[ -z ${prefix:-} ]] || tail -5 "$prefix/error.log" >&2 || true
    tail -20 "$RAW/$name.$how.stdout.log" >&2 || true
    die "$name ($how) did not start listening on $port"
  }
}

# ------------------------------------------------------------------ phases
wait_quiet() { # up to QUIET_WAIT s until the machine is idle for 2 s
  local end=$((SECONDS + QUIET_WAIT)) b0 b1
  ((QUIET_WAIT > 0)) || return 0
  while :; do
    b0=$("${BT[@]}" cpustat); sleep 2; b1=$("${BT[@]}" cpustat)
    # 10% of a core for 2 s, plus the helpers' own start-up
    ((b1 - b0 <= CLK_TCK / 5 + 4)) && return 0
    if ((SECONDS >= end)); then
      log "machine still busy after ${QUIET_WAIT}s ($((b1 - b0)) ticks in 2 s); going on"
      return 0
    fi
  done
}

load_round() { # NAME PORT ROUND
  local name=$1 port=$2 round=$3 pids opids t0 t1 o0 o1 m0 m1 s0 s1 wt
  local rps p50 p99 reqs errs f foreign p c0 c1
  f=$RAW/wrk.$name.$round.txt
  wait_quiet
  read -ra pids <<<"$(pidtree "${PROXY_PID[$name]}")"
  read -ra opids <<<"$(for p in "${ORIGIN_PIDS[@]}"; do pidtree "$p"; done | tr '\n' ' ')"
  [[ $MODE == balance ]] && read -ra c0 <<<"$("${BT[@]}" origin-requests "${ORIGIN_PORTS[@]}")"
  m0=$("${BT[@]}" cpustat)
  t0=$(cputicks "${pids[@]}")
  o0=$(cputicks "${opids[@]}")
  s0=$(date +%s.%N)
  wt=$("${BT[@]}" timed "$f" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} \
    wrk ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$port/") ||
    die "wrk failed against $name: $(tail -3 "$f")"
  s1=$(date +%s.%N)
  t1=$(cputicks "${pids[@]}")
  o1=$(cputicks "${opids[@]}")
  m1=$("${BT[@]}" cpustat)
  [[ $MODE == balance ]] && read -ra c1 <<<"$("${BT[@]}" origin-requests "${ORIGIN_PORTS[@]}")"
  read -r rps p50 p99 reqs errs <<<"$("${BT[@]}" wrk "$f")"
  ((reqs > 0)) || die "wrk completed no request against $name; see $f"
  # machine-wide busy time not spent in the proxy, the origin or wrk
  foreign=$(calc "(($m1 - $m0) - ($t1 - $t0) - ($o1 - $o0) - $wt) * 100 / $CLK_TCK / ($s1 - $s0)")
  emit "$name" rps "$rps"
  emit "$name" p50_ms "$p50"
  emit "$name" p99_ms "$p99"
  emit "$name" errors "$errs"
  emit "$name" cpu_us "$(calc "($t1 - $t0) * 1000000 / $CLK_TCK / $reqs")"
  emit "$name" cpu_busy "$(calc "($t1 - $t0) * 100 / $CLK_TCK / ($s1 - $s0)")"
  emit "$name" foreign "$foreign"
  log "round $round $name: $rps req/s, p50 ${p50}ms, p99 ${p99}ms, proxy $((t1 - t0)) ticks, origin $((o1 - o0)), wrk $wt, others ${foreign%.*}% of a core, $errs errors"
  [[ $MODE == balance ]] && emit_split "$name" "round $round" c0 c1
  ((errs == 0)) || log "WARNING: $name had $errs errors in round $round (see $f)"
  awk "BEGIN { exit !($foreign > 20) }" &&
    log "WARNING: other programs used ${foreign%.*}% of a core during this run: the load rows are disturbed"
  return 0
}

emit_split() { # NAME WHAT BEFORE_ARRAY AFTER_ARRAY: % of requests per origin
  local name=$1 what=$2 k total=0 split=""
  local -n before=$3 after=$4
  for k in "${!after[@]}"; do total=$((total + after[k] - before[k])); done
  ((total > 0)) || return 0
  for k in "${!after[@]}"; do
    emit "$name" "share_$((k + 1))" "$(calc "(${after[k]} - ${before[k]}) * 100 / $total")"
    split+="$(((after[k] - before[k]) * 100 / total))/"
  done
  log "$what $name: requests per origin ${split%/} %"
}

phase_load() {
  local r i name order
  for name in "${PROXIES[@]}"; do
    log "warm-up: wrk 2s against $name"
    ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} -t"$WRK_THREADS" -c"$CONNS" -d2s "http://127.0.0.1:${PROXY_PORT[$name]}/" >"$RAW/wrk.$name.warmup.txt" 2>&1
  done
  log "origin alone: wrk $DURATION straight to the origin"
  ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} wrk ${WRK_ARGS[@]+"${WRK_ARGS[@]}"} -t"$WRK_THREADS" -c"$CONNS" -d"$DURATION" --latency "http://127.0.0.1:$ORIGIN_PORT/" >"$RAW/wrk.origin.txt" 2>&1
  echo "origin_rps=$("${BT[@]}" wrk "$RAW/wrk.origin.txt" | cut -d' ' -f1)" >>"$INFO"
  for ((r = 1; r <= ROUNDS; r++)); do
    # alternate which proxy goes first: the list forwards in odd rounds,
    # backwards in even ones
    order=("${PROXIES[@]}")
    if ! ((r % 2)); then
      order=()
      for ((i = ${#PROXIES[@]} - 1; i >= 0; i--)); do order+=("${PROXIES[i]}"); done
    fi
    for name in "${order[@]}"; do
      load_round "$name" "${PROXY_PORT[$name]}" "$r"
    done
  done
}

# lat_round NAME PORT ROUND: one run of the fixed-rate generator (2 s of
# warm-up, then LAT_DURATION measured), with the proxy's CPU time as in
# load_round
lat_round() {
  local name=$1 port=$2 round=$3 pids opids t0 t1 o0 o1 m0 m1 s0 s1 wt f foreign
  local rate p50 p90 p99 p999 max errs lag
  f=$RAW/latency.$name.$round.txt
  wait_quiet
  read -ra opids <<<"$(pidtree "$ORIGIN_PID")"
  # NAME origin: the generator straight to the origin, whose CPU is then t
  if [[ $name == origin ]]; then pids=("${opids[@]}"); else read -ra pids <<<"$(pidtree "${PROXY_PID[$name]}")"; fi
  m0=$("${BT[@]}" cpustat)
  t0=$(cputicks "${pids[@]}")
  o0=$(cputicks "${opids[@]}")
  s0=$(date +%s.%N)
  wt=$("${BT[@]}" timed "$f" ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "$LOADGEN_BIN" --addr "127.0.0.1:$port" \
    --rate "$RATE" --duration "$LAT_DURATION" --warmup 2s --conns "$LAT_CONNS" --body-len 1024) ||
    die "the load generator failed against $name: $(tail -3 "$f")"
  s1=$(date +%s.%N)
  t1=$(cputicks "${pids[@]}")
  o1=$(cputicks "${opids[@]}")
  m1=$("${BT[@]}" cpustat)
  read -r rate p50 p90 p99 p999 max errs lag <<<"$("${BT[@]}" latency "$f")"
  emit "$name" lat_rate "$rate"
  emit "$name" lat_p50_us "$p50"
  emit "$name" lat_p90_us "$p90"
  emit "$name" lat_p99_us "$p99"
  emit "$name" lat_p999_us "$p999"
  emit "$name" lat_max_us "$max"
  emit "$name" lat_errors "$errs"
  emit "$name" lat_lag_p99_us "$lag"
  if [[ $name != origin ]]; then
    # the whole run, warm-up included: a share of a core, not per request
    emit "$name" lat_cpu_busy "$(calc "($t1 - $t0) * 100 / $CLK_TCK / ($s1 - $s0)")"
    foreign=$(calc "(($m1 - $m0) - ($t1 - $t0) - ($o1 - $o0) - $wt) * 100 / $CLK_TCK / ($s1 - $s0)")
    emit "$name" lat_foreign "$foreign"
  else
    foreign=$(calc "(($m1 - $m0) - ($o1 - $o0) - $wt) * 100 / $CLK_TCK / ($s1 - $s0)")
  fi
  log "latency round $round $name: $rate req/s, p50 ${p50}µs, p90 ${p90}µs, p99 ${p99}µs, p99.9 ${p999}µs, max ${max}µs, $errs errors; generator's wake-up lag p99 ${lag}µs; others ${foreign%.*}% of a core"
  ((errs == 0)) || log "WARNING: $name had $errs errors or unsent requests in latency round $round (see $f)"
  awk "BEGIN { exit !($foreign > 20) }" &&
    log "WARNING: other programs used ${foreign%.*}% of a core during this run: the latency rows are disturbed"
  # the generator's lateness is in every latency it reports: well above a few
  # tens of µs means something else held the load core
  if awk "BEGIN { exit !($lag > 200) }"; then
    log "WARNING: the generator woke up to ${lag}µs late (p99): the load core was busy; this run's latencies include that"
    LAT_DISTURBED=$((LAT_DISTURBED + 1))
  fi
  LAT_RUNS=$((LAT_RUNS + 1))
  return 0
}

LAT_RUNS=0
LAT_DISTURBED=0
phase_latency() {
  local r i name order
  log "latency: origin alone, $RATE req/s for $LAT_DURATION"
  lat_round origin "$ORIGIN_PORT" origin
  for ((r = 1; r <= ROUNDS; r++)); do
    # alternate as in phase_load
    order=("${PROXIES[@]}")
    if ! ((r % 2)); then
      order=()
      for ((i = ${#PROXIES[@]} - 1; i >= 0; i--)); do order+=("${PROXIES[i]}"); done
    fi
    for name in "${order[@]}"; do
      lat_round "$name" "${PROXY_PORT[$name]}" "$r"
    done
  done
  ((LAT_DISTURBED == 0)) ||
    echo "note=latency: in $LAT_DISTURBED of $LAT_RUNS runs (origin alone included) the generator's wake-up lag p99 was above 200 µs: the load core was busy, and those runs' latencies include it (raw outputs: results/raw/latency.*.txt)." >>"$INFO"
}

phase_strace() { # strace -c on the running native proxies, N sequential requests
  local name pids sp out p args calls tid
  for name in "${PROXIES[@]}"; do
    out=$RAW/strace.$name.txt
    read -ra pids <<<"$(pidtree "${PROXY_PID[$name]}")"
    "${BT[@]}" seq "${PROXY_PORT[$name]}" "$WARMUP"
    args=()
    for p in "${pids[@]}"; do args+=(-p "$p"); done
    strace -f -c -o "$out" "${args[@]}" 2>"$RAW/strace.$name.stderr" &
    sp=$!
    PIDS+=("$sp")
    # wait until every thread of every process is traced
    local deadline=$((SECONDS + 30)) ok
    while :; do
      ok=1
      for p in "${pids[@]}"; do
        for tid in /proc/"$p"/task/*; do
          [[ $(awk '/^TracerPid:/ {print $2}' "$tid/status" 2>/dev/null) != 0 ]] || ok=0
        done
      done
      ((ok)) && break
      ((SECONDS < deadline)) || die "strace did not attach to $name"
      sleep 0.1
    done
    "${BT[@]}" seq "${PROXY_PORT[$name]}" "$N"
    sleep 0.2
    kill -INT "$sp"
    wait "$sp" || true
    forget_pid "$sp"
    calls=$("${BT[@]}" strace "$out")
    emit "$name" syscalls "$(calc "$calls / $N")"
    log "strace $name: $calls syscalls for $N requests"
  done
}

phase_idle() { # RSS growth per idle keep-alive connection
  local name pids kib opened alive failures before after
  for name in "${PROXIES[@]}"; do
    read -ra pids <<<"$(pidtree "${PROXY_PID[$name]}")"
    log "idle: $IDLE_CONNS keep-alive connections to $name"
    read -r kib opened alive failures before after <<<"$(
      "${BT[@]}" idle "${PROXY_PORT[$name]}" "$IDLE_CONNS" "${pids[@]}" 2>>"$RAW/idle.$name.json")"
    log "idle $name: RSS $before -> $after KiB, $opened opened, $alive still open, $failures failed"
    ((failures == 0)) || log "WARNING: $failures of $IDLE_CONNS connections to $name failed (see $RAW/idle.$name.json)"
    ((alive == opened)) || log "WARNING: $name closed $((opened - alive)) idle connections during the hold"
    emit "$name" idle_kib "$kib"
    sleep 1 # let the proxy see the closes before the next phase
  done
}

vg_requests() { # PORT COUNT: requests against a proxy under valgrind
  timeout "$VG_TIMEOUT" "${BT[@]}" seq "$1" "$2" ${SEQ_ARGS[@]+"${SEQ_ARGS[@]}"} ||
    die "requests under valgrind failed or timed out (port $1)"
}

phase_callgrind() {
  local name port out pid dump ir c0 c1
  for name in "${PROXIES[@]}"; do
    port=$(freeport)
    out=$RAW/callgrind.$name.out
    rm -f "$out" "$out".*
    log "callgrind: starting $name under valgrind"
    if [[ $MODE == policies ]]; then
      # the same request to strait-P and nginx-P
      BENCH_HEADERS=$(policy_headers "${name#*-}")
      BENCH_ANY_BODY=$([[ ${name#*-} == compress ]] && echo 1 || echo 0)
      export BENCH_HEADERS BENCH_ANY_BODY
    fi
    start_proxy "$name" callgrind "$port" "$out"
    pid=$STARTED_PID
    vg_requests "$port" "$WARMUP"
    timeout "$VG_TIMEOUT" callgrind_control -z "$pid" >>"$RAW/callgrind_control.log" 2>&1 ||
      die "callgrind_control -z $pid failed"
    [[ $MODE == balance ]] && read -ra c0 <<<"$("${BT[@]}" origin-requests "${ORIGIN_PORTS[@]}")"
    vg_requests "$port" "$N"
    [[ $MODE == balance ]] && read -ra c1 <<<"$("${BT[@]}" origin-requests "${ORIGIN_PORTS[@]}")" &&
      emit_split "$name" callgrind c0 c1
    timeout "$VG_TIMEOUT" callgrind_control -d "$pid" >>"$RAW/callgrind_control.log" 2>&1 ||
      die "callgrind_control -d $pid failed"
    # the first dump after zeroing is part 1; wait until it is complete
    dump=$out.1
    local deadline=$((SECONDS + 60))
    until [[ -f $dump ]] && grep -q '^totals:' "$dump"; do
      ((SECONDS < deadline)) || die "no callgrind dump $dump"
      sleep 0.2
    done
    ir=$("${BT[@]}" callgrind "$dump")
    emit "$name" ir "$(calc "$ir / $N")"
    log "callgrind $name: $ir Ir for $N requests"
    stop_pid "$pid" 60
    forget_pid "$pid"
  done
}

dhat_run() { # NAME COUNT -> sets DHAT_BLOCKS DHAT_BYTES
  local name=$1 count=$2 port out pid
  port=$(freeport)
  out=$RAW/dhat.$name.$count
  rm -f "$out.json" "$out.log"
  start_proxy "$name" dhat "$port" "$out"
  pid=$STARTED_PID
  vg_requests "$port" "$WARMUP"
  vg_requests "$port" "$count"
  stop_pid "$pid" 120 # DHAT writes its totals at exit
  forget_pid "$pid"
  read -r DHAT_BLOCKS DHAT_BYTES <<<"$("${BT[@]}" dhat "$out.log")"
}

phase_dhat() {
  local name b1 y1 b2 y2
  for name in "${PROXIES[@]}"; do
    if [[ $name == strait && -z $STRAIT_STANDIN && $(strait_allocator "$STRAIT_BIN") != system* ]]; then
      # DHAT counts malloc/free calls; jemalloc's (prefixed) functions are
      # invisible to it. The allocation count does not depend on the allocator.
      if [[ ! -x $SYSALLOC_BIN ]]; then
        log "WARNING: no $SYSALLOC_BIN (cargo build --release --no-default-features): strait's DHAT row skipped"
        continue
      fi
      log "dhat: strait runs $SYSALLOC_BIN (system allocator; DHAT sees only malloc and free)"
      echo "note=DHAT rows: strait built with the system allocator (\`--no-default-features\`), as DHAT sees only malloc/free; the allocation counts do not depend on the allocator." >>"$INFO"
    fi
    log "dhat: $name with $DHAT_BASE and $((DHAT_BASE + N)) requests"
    dhat_run "$name" "$DHAT_BASE"
    b1=$DHAT_BLOCKS y1=$DHAT_BYTES
    dhat_run "$name" $((DHAT_BASE + N))
    b2=$DHAT_BLOCKS y2=$DHAT_BYTES
    emit "$name" allocs "$(calc "($b2 - $b1) / $N")"
    emit "$name" alloc_bytes "$(calc "($y2 - $y1) / $N")"
    log "dhat $name: $b1 -> $b2 blocks, $y1 -> $y2 bytes"
  done
}

# MODE=floods: each flood against a freshly started proxy
flood_start() { # NAME -> sets FPORT FPID FPIDS (and PORT2, ADMIN_PORT)
  local name=$1
  FPORT=$(freeport)
  PORT2=$(freeport)
  ADMIN_PORT=$(freeport)
  # the big flood counts nginx's "worker_connections are not enough" lines
  [[ $name == nginx ]] && rm -f "$TMP/nginx-native/error.log"
  start_proxy "$name" native "$FPORT"
  FPID=$STARTED_PID
  "${BT[@]}" seq "$FPORT" 200 || die "$name does not proxy correctly (expected 200 with a 1024-byte body)"
  sleep 0.5
  read -ra FPIDS <<<"$(pidtree "$FPID")"
}

flood_stop() { # NAME [PID]
  local pid=${2:-$FPID}
  kill -0 "$pid" 2>/dev/null || log "WARNING: $1 exited during the flood"
  stop_pid "$pid" 10
  forget_pid "$pid"
}

kib_to_mib() { [[ $1 =~ ^[0-9]+$ ]] && calc "$1 / 1024" || echo "$1"; }

phase_floods() {
  local name fl first port kib opened alive failures cpu p50 bcpu bp50 brss during acpu f
  for name in "${PROXIES[@]}"; do
    first=1
    for fl in $FLOODS; do
      [[ $fl == big ]] && continue
      flood_start "$name"
      port=$FPORT
      # nginx 1.22 cannot serve HTTP/1.1 and h2c prior knowledge on one
      # cleartext port: its h2c flood goes to a second listener
      [[ $fl == h2 && $name == nginx ]] && port=$PORT2
      f=$RAW/flood.$fl.$name.json
      log "flood $fl: $FLOOD_CONNS connections to $name, ${FLOOD_HOLD}s$( ((first)) && echo " (after ${FLOOD_HOLD}s without a flood)")"
      read -r kib opened alive failures cpu p50 bcpu bp50 brss during acpu <<<"$(
        ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "${BT[@]}" flood "$fl" "$port" "$FPORT" "$FLOOD_CONNS" \
          "$FLOOD_HOLD" "$first" "${FPIDS[@]}" 2>>"$f")" || die "flood $fl against $name failed (see $f)"
      if ((first)); then
        emit "$name" base_cpu "$bcpu"
        emit "$name" base_p50_ms "$bp50"
        emit "$name" base_rss "$brss"
        log "no flood $name: CPU ${bcpu}% of a core, p50 ${bp50}ms, RSS $brss KiB"
        first=0
      fi
      emit "$name" "${fl}_kib" "$kib"
      emit "$name" "${fl}_cpu" "$cpu"
      emit "$name" "${fl}_p50_ms" "$p50"
      emit "$name" "${fl}_alive" "$alive"
      emit "$name" "${fl}_after_cpu" "$acpu"
      log "flood $fl $name: $kib KiB per connection (RSS $during KiB), CPU ${cpu}% of a core, p50 ${p50}ms, $opened opened, $alive still open, $failures failed; CPU ${acpu}% in the 2 s after they closed"
      ((failures == 0)) || log "WARNING: $failures of $FLOOD_CONNS connections to $name failed (see $f)"
      ((alive == opened)) || log "WARNING: $name closed $((opened - alive)) of the $fl connections during the hold"
      flood_stop "$name"
    done
  done
  [[ " $FLOODS " == *" big "* ]] && phase_big
  return 0
}

# phase_big: BIG_CONNS connections to every proxy at once (each its own
# process and client; RSS is per process, so they do not disturb each
# other's rows, and the run takes one BIG_AFTER instead of one per proxy)
phase_big() {
  local name limit f opened alive failures before during a10 a30 a60 last excess refused
  local -A pid port admin client
  for name in "${PROXIES[@]}"; do
    flood_start "$name"
    pid[$name]=$FPID port[$name]=$FPORT admin[$name]=$ADMIN_PORT
    if [[ $name == strait ]]; then
      limit=$("${BT[@]}" metric "$ADMIN_PORT" strait_client_connections_limit)
      ((${limit%.*} >= BIG_CONNS)) ||
        die "strait's max_connections is $limit, below BIG_CONNS=$BIG_CONNS (descriptor limit $(ulimit -n))"
      echo "strait_max_connections=${limit%.*}" >>"$INFO"
    fi
  done
  log "big flood: $BIG_CONNS connections to each of ${PROXIES[*]}, then RSS each second for ${BIG_AFTER}s after they close"
  for name in "${PROXIES[@]}"; do
    read -ra FPIDS <<<"$(pidtree "${pid[$name]}")"
    ${PIN_LOAD[@]+"${PIN_LOAD[@]}"} "${BT[@]}" big-flood "${port[$name]}" "$BIG_CONNS" "$BIG_AFTER" \
      "${FPIDS[@]}" >"$RAW/flood.big.$name.out" 2>"$RAW/flood.big.$name.json" &
    client[$name]=$!
    PIDS+=("${client[$name]}")
  done
  for name in "${PROXIES[@]}"; do
    f=$RAW/flood.big.$name.json
    wait "${client[$name]}" || die "big flood against $name failed (see $f)"
    forget_pid "${client[$name]}"
    read -r opened alive failures before during a10 a30 a60 last <"$RAW/flood.big.$name.out"
    excess=$(calc "($last - $before) / 1024")
    emit "$name" big_before "$(kib_to_mib "$before")"
    emit "$name" big_during "$(kib_to_mib "$during")"
    emit "$name" big_alive "$alive"
    [[ $a10 == nan ]] || emit "$name" big_after10 "$(kib_to_mib "$a10")"
    [[ $a30 == nan ]] || emit "$name" big_after30 "$(kib_to_mib "$a30")"
    [[ $a60 == nan ]] || emit "$name" big_after60 "$(kib_to_mib "$a60")"
    emit "$name" big_excess "$excess"
    emit "$name" big_ok "$(awk "BEGIN { print ($excess <= 50) ? 1 : 0 }")"
    if [[ $name == strait ]]; then
      refused=$("${BT[@]}" metric "${admin[$name]}" strait_client_connections_refused_total)
    else
      refused=$(grep -c "worker_connections are not enough" "$TMP/nginx-native/error.log" || true)
    fi
    emit "$name" big_refused "$refused"
    log "big flood $name: RSS $before KiB before, $during with $alive of $opened open ($failures failed), $a10 / $a30 / $a60 KiB 10 / 30 / 60 s after the close, $(printf %.1f "$excess") MiB above before at the end; $refused refused"
    ((failures == 0)) || log "WARNING: $failures of $BIG_CONNS connections to $name failed (see $f)"
    ((alive == opened)) || log "WARNING: $name closed $((opened - alive)) of the $BIG_CONNS connections before the clients did"
    flood_stop "$name" "${pid[$name]}"
  done
}

# ------------------------------------------------------------------ main
install_tools
build_strait
build_loadgen
raise_nofile

CLK_TCK=$(getconf CLK_TCK)
NPROC=$(nproc)
if ((NPROC >= 2)); then
  CPU_PIN=1
  PIN_PROXY=(taskset -c "$PROXY_CPU")
  PIN_LOAD=(taskset -c "$LOAD_CPU")
else
  log "WARNING: only $NPROC core: proxy, wrk and origin share it (no pinning)"
fi

TMP=$(mktemp -d /tmp/strait-bench.XXXXXX)
mkdir -p "$RAW"
rm -f "$RAW"/*
RESULTS=$RAW/results.jsonl
INFO=$RAW/info.txt
: >"$RESULTS"

{
  echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "nproc=$NPROC"
  echo "cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)"
  echo "kernel=$(uname -r)"
  if [[ $STRAIT_STANDIN == nginx ]]; then
    echo "strait_version=NOT STRAIT: A/A test, the strait column is a second nginx"
  else
    echo "strait_version=$("$STRAIT_BIN" --version 2>/dev/null | head -1 || echo "strait (version unknown)")"
  fi
  echo "git=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo none)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo '+changes')"
  echo "nginx_version=$(nginx -v 2>&1 | sed 's#^nginx version: ##')"
  echo "wrk_version=$(wrk -v 2>&1 | head -1 | awk '{print $2}')"
  echo "valgrind_version=$(valgrind --version)"
  echo "strace_version=$(strace -V | head -1 | awk '{print $NF}')"
  [[ $STRAIT_STANDIN == nginx ]] || echo "strait_allocator=$(strait_allocator "$STRAIT_BIN")"
  echo "rounds=$ROUNDS"
  echo "duration=$DURATION"
  echo "conns=$CONNS"
  echo "n=$N"
  echo "idle_conns=$IDLE_CONNS"
  echo "phases=$PHASES"
  if has_phase latency; then
    echo "rate=$RATE"
    echo "lat_duration=$LAT_DURATION"
    echo "lat_conns=$LAT_CONNS"
  fi
  echo "loadavg=$(cut -d' ' -f1-3 /proc/loadavg)"
  echo "proxy_cpu=$([[ $CPU_PIN == 1 ]] && echo "$PROXY_CPU" || echo any)"
  echo "load_cpu=$([[ $CPU_PIN == 1 ]] && echo "$LOAD_CPU" || echo any)"
} >"$INFO"

if [[ $MODE == balance ]]; then
  {
    echo "mode=balance"
    echo "algos=$ALGOS"
    echo "origins=$ORIGINS"
    echo "paths=$BALANCE_PATHS"
  } >>"$INFO"
  if ((BALANCE_PATHS > 1)); then
    # wrk cycles over the same paths as `benchtool.py seq PORT N PATHS`;
    # the requests are built once, in init
    cat >"$TMP/paths.lua" <<LUA
local reqs, n, i = {}, $BALANCE_PATHS, 0
init = function(args)
  for k = 0, n - 1 do reqs[k] = wrk.format(nil, "/p/" .. k) end
end
request = function()
  local r = reqs[i]
  i = (i + 1) % n
  return r
end
LUA
    WRK_ARGS=(-s "$TMP/paths.lua")
  fi
fi

start_origins

if [[ $MODE == protocols ]]; then
  {
    echo "mode=protocols"
    echo "scenarios=$SCENARIOS"
    echo "h2_conns=$H2_CONNS"
    echo "h2_streams=$H2_STREAMS"
    echo "handshake_conns=$HANDSHAKE_CONNS"
    echo "h2load_version=$(h2load --version 2>&1 | head -1 | awk '{print $2}')"
    echo "openssl_version=$(openssl version | awk '{print $2}')"
  } >>"$INFO"
  make_cert
  declare -A PROXY_PORT PROXY_PORT2 PROXY_PID
  for name in "${PROXIES[@]}"; do
    PROXY_PORT[$name]=$(freeport)
    PORT2=$(freeport)
    PROXY_PORT2[$name]=$PORT2
    start_proxy "$name" native "${PROXY_PORT[$name]}"
    PROXY_PID[$name]=$STARTED_PID
    check_protocols "$name"
    log "$name proxy: TLS on 127.0.0.1:${PROXY_PORT[$name]}, h2c on 127.0.0.1:$PORT2"
  done
  phase_protocols
  for name in "${PROXIES[@]}"; do
    kill -0 "${PROXY_PID[$name]}" 2>/dev/null || log "WARNING: $name exited during the tests"
    stop_pid "${PROXY_PID[$name]}" 10
    forget_pid "${PROXY_PID[$name]}"
  done
  REPORT=$RESULTS_DIR/protocols.md
  "${BT[@]}" protocols-report "$RESULTS" "$INFO" >"$REPORT"
  cat "$REPORT"
  log "written to $REPORT (raw outputs in $RAW)"
  exit 0
fi

if [[ $MODE == floods ]]; then
  {
    echo "mode=floods"
    echo "floods=$FLOODS"
    echo "flood_conns=$FLOOD_CONNS"
    echo "flood_hold=$FLOOD_HOLD"
    echo "big_conns=$BIG_CONNS"
    echo "big_after=$BIG_AFTER"
    echo "nofile=$NOFILE"
  } >>"$INFO"
  phase_floods
  REPORT=$RESULTS_DIR/floods.md
  "${BT[@]}" floods-report "$RESULTS" "$INFO" >"$REPORT"
  cat "$REPORT"
  log "written to $REPORT (raw outputs in $RAW)"
  exit 0
fi

if [[ $MODE == policies ]]; then
  {
    echo "mode=policies"
    echo "policies=$POLICIES"
  } >>"$INFO"
  policies_prepare
  PROXIES=()
  for p in $POLICIES; do PROXIES+=("strait-$p"); done
  for p in $POLICIES; do nginx_policy "$p" && PROXIES+=("nginx-$p"); done
  NGINX_HTTP_EXTRA="" NGINX_SERVER_EXTRA="" NGINX_LOCATION_EXTRA=""
  log "policies: rows ${PROXIES[*]}"
  phase_callgrind
  [[ " $POLICIES " == *" compress "* ]] && phase_gzip_throughput
  REPORT=$RESULTS_DIR/policies.md
  "${BT[@]}" policies-report "$RESULTS" "$INFO" >"$REPORT"
  cat "$REPORT"
  log "written to $REPORT (raw outputs in $RAW)"
  exit 0
fi

if [[ $MODE == balance ]]; then
  check_algos
  PROXIES=()
  for algo in ${BALANCERS[@]+"${BALANCERS[@]}"}; do PROXIES+=("strait-$algo"); done
  PROXIES+=(nginx)
  log "balance: rows ${PROXIES[*]} over ${#ORIGIN_PORTS[@]} origins (${ORIGIN_PORTS[*]})"
fi

declare -A PROXY_PORT PROXY_PID
if has_phase load || has_phase latency || has_phase strace || has_phase idle; then
  for name in "${PROXIES[@]}"; do
    PROXY_PORT[$name]=$(freeport)
    start_proxy "$name" native "${PROXY_PORT[$name]}"
    PROXY_PID[$name]=$STARTED_PID
    "${BT[@]}" seq "${PROXY_PORT[$name]}" 10 ${SEQ_ARGS[@]+"${SEQ_ARGS[@]}"} ||
      die "$name does not proxy correctly (expected 200 with a 1024-byte body)"
    sleep 0.5
    read -ra pids <<<"$(pidtree "$STARTED_PID")"
    emit "$name" rss_start "$(rss "${pids[@]}")"
    log "$name proxy on 127.0.0.1:${PROXY_PORT[$name]} (pids ${pids[*]})"
  done
fi

has_phase load && phase_load
has_phase latency && phase_latency
has_phase strace && phase_strace
has_phase idle && phase_idle

if has_phase load || has_phase latency || has_phase strace || has_phase idle; then
  for name in "${PROXIES[@]}"; do
    kill -0 "${PROXY_PID[$name]}" 2>/dev/null || log "WARNING: $name exited during the tests"
    stop_pid "${PROXY_PID[$name]}" 10
    forget_pid "${PROXY_PID[$name]}"
  done
fi

has_phase callgrind && phase_callgrind
has_phase dhat && phase_dhat

if [[ $MODE == balance ]]; then
  REPORT=$RESULTS_DIR/balance.md
  "${BT[@]}" balance-report "$RESULTS" "$INFO" >"$REPORT"
else
  REPORT=$RESULTS_DIR/latest.md
  "${BT[@]}" report "$RESULTS" "$INFO" >"$REPORT"
fi
cat "$REPORT"
log "written to $REPORT (raw outputs in $RAW)"
