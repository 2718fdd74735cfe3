#!/usr/bin/env bash
# Idle cost of a lab: CPU (% of one core) and RSS of every hasidecar
# process (agents, witness, guards: hasidecar-guard, or `hasidecar pgguard`
# when no hasidecar-guard is beside BIN) over WINDOW seconds of a lab at rest
# (2 standbys + witness), after SETTLE seconds. Prints one line per process
# and the total. Run under the shared lock on a shared machine:
#   flock /tmp/heavy.lock bench/idle/idle.sh      (or: make bench-idle)
# With KEEP=1 use flock -o: the lab's daemons would otherwise inherit the
# lock and hold it after the script ends.
# Environment: BIN (bin/hasidecar), DIR (/tmp/idlelab), BASE_PORT (24160),
# STANDBYS (2), SETTLE (20), WINDOW (30), KEEP=1 leaves the lab up.
set -euo pipefail
BIN=${BIN:-bin/hasidecar}
DIR=${DIR:-/tmp/idlelab}
BASE_PORT=${BASE_PORT:-24160}
STANDBYS=${STANDBYS:-2}
SETTLE=${SETTLE:-20}
WINDOW=${WINDOW:-30}
TCK=$(getconf CLK_TCK)

"$BIN" lab down --dir "$DIR" --purge >/dev/null 2>&1 || true
cleanup() { [ "${KEEP:-}" = 1 ] || "$BIN" lab down --dir "$DIR" --purge >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$BIN" lab up --dir "$DIR" --standbys "$STANDBYS" --witness --base-port "$BASE_PORT" >/dev/null
sleep "$SETTLE"

# Only this lab's processes: their command line names a file under DIR.
pids() { pgrep -f "( agent| pgguard|/hasidecar-guard) .*$DIR/" || true; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat" 2>/dev/null || echo -1; }
label() {
	local cmd; cmd=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true)
	local kind=agent; [[ $cmd == *" pgguard "* || $cmd == *hasidecar-guard* ]] && kind=guard
	local node; node=$(grep -o "$DIR/[^/ ]*" <<<"$cmd" | head -1); node=${node#"$DIR"/}
	echo "$kind $node"
}
declare -A t0 name
for p in $(pids); do t0[$p]=$(ticks "$p"); name[$p]=$(label "$p"); done
start=$(date +%s.%N)
sleep "$WINDOW"
end=$(date +%s.%N)
secs=$(echo "$end - $start" | bc -l)
total=0
printf '%-8s %-9s %-10s %8s %8s %8s %8s\n' pid kind node 'cpu%' 'rss_mb' 'pss_mb' 'anon_mb'
for p in $(printf '%s\n' "${!t0[@]}" | sort -n); do
	t1=$(ticks "$p")
	if [ "$t1" = -1 ] || [ "${t0[$p]}" = -1 ]; then continue; fi
	pct=$(echo "100 * ($t1 - ${t0[$p]}) / $TCK / $secs" | bc -l)
	rss=$(awk '/^VmRSS/ {printf "%.1f", $2/1024}' "/proc/$p/status")
	# PSS counts the binary's pages shared by the lab's processes once in
	# all; anon is the process's own memory.
	pss=$(awk '/^Pss:/ {printf "%.1f", $2/1024}' "/proc/$p/smaps_rollup")
	anon=$(awk '/^Anonymous:/ {printf "%.1f", $2/1024}' "/proc/$p/smaps_rollup")
	total=$(echo "$total + $pct" | bc -l)
	read -r kind node <<<"${name[$p]}"
	printf '%-8s %-9s %-10s %8.2f %8s %8s %8s\n' "$p" "$kind" "$node" "$pct" "$rss" "$pss" "$anon"
done
printf 'total %.2f%% of one core over %.1f s (CLK_TCK %s)\n' "$total" "$secs" "$TCK"
