#!/usr/bin/env bash
# Run N headless Claude Code workers on one agentbus namespace and wait for them all.
#
#   client_configs/runner.sh N PROMPT_FILE [extra claude flags...]
#   client_configs/runner.sh 3 examples/subagent_prompt.md --model haiku --max-turns 40
#
# Worker i runs `claude -p` with AGENTBUS_AGENT=worker-i, which claude_code.mcp.json hands to its own
# agentbus server as the default agent id; every worker joins AGENTBUS_NAMESPACE. Environment:
#   AGENTBUS_NAMESPACE   the swarm the workers join (default: my-project, as in claude_code.mcp.json)
#   AGENTBUS_MCP_CONFIG  the MCP config each worker loads (default: claude_code.mcp.json next to this file)
#   AGENTBUS_LOG_DIR     where worker-i.json (the result) and worker-i.log go (default: ./agentbus-logs)
# The workers may call agentbus tools only; pass e.g. `--allowedTools Edit Read` to allow more.
# Exits 0 when every worker exited 0, 1 when one did not, 2 on bad usage.
set -euo pipefail

usage() {
  echo "usage: $0 N PROMPT_FILE [extra claude flags...]" >&2
  exit 2
}

[ "$#" -ge 2 ] || usage
count=$1
prompt_file=$2
shift 2
case "$count" in '' | *[!0-9]*) usage ;; esac
[ "$count" -ge 1 ] || usage
if [ ! -r "$prompt_file" ]; then
  echo "$0: cannot read the prompt file $prompt_file" >&2
  exit 2
fi
if ! command -v claude >/dev/null 2>&1; then
  echo "$0: claude is not on PATH (install Claude Code, or run examples/runner.py instead)" >&2
  exit 2
fi

here=$(cd "$(dirname "$0")" && pwd)
mcp_config=${AGENTBUS_MCP_CONFIG:-$here/claude_code.mcp.json}
export AGENTBUS_NAMESPACE=${AGENTBUS_NAMESPACE:-my-project}
log_dir=${AGENTBUS_LOG_DIR:-agentbus-logs}
mkdir -p "$log_dir"
prompt=$(cat "$prompt_file")

pids=()
stop_all() {
  # Background jobs of a script ignore Ctrl-C, so pass it on. A task a stopped worker held goes back
  # to the queue when its lease expires.
  for pid in ${pids[@]+"${pids[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
}
trap 'stop_all; wait; exit 130' INT
trap 'stop_all; wait; exit 143' TERM

for i in $(seq 1 "$count"); do
  agent="worker-$i"
  AGENTBUS_AGENT=$agent claude -p "$prompt

Your agentbus agent id is $agent: pass \"agent\": \"$agent\" on every agentbus call." \
    --mcp-config "$mcp_config" \
    --strict-mcp-config \
    --allowedTools 'mcp__agentbus__*' \
    --output-format json \
    "$@" \
    </dev/null >"$log_dir/$agent.json" 2>"$log_dir/$agent.log" &
  pids+=("$!")
  echo "started $agent (pid $!) in namespace $AGENTBUS_NAMESPACE"
done

failed=0
for i in "${!pids[@]}"; do
  agent="worker-$((i + 1))"
  if wait "${pids[$i]}"; then
    echo "$agent finished: $log_dir/$agent.json"
  else
    echo "$agent exited with status $?: see $log_dir/$agent.log" >&2
    failed=1
  fi
done
exit "$failed"
