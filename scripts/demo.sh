#!/usr/bin/env bash
# make demo-ctl: a virtual laptop and a server in two network namespaces, joined
# by a "wifi" and an "lte" veth link. mptcpctl programs the laptop's MPTCP
# path manager exactly as `ip mptcp` would, watches a real MPTCP transfer
# grow a second subflow over lte, and is diffed against iproute2 live.
# Needs root; touches nothing outside its own namespaces, which it removes.
set -euo pipefail

BIN=${BIN:-bin}
ctl="$BIN/mptcpctl"
echo_bin="$BIN/mptcpecho"
[ "$(id -u)" = 0 ] || { echo "demo: needs root (it creates network namespaces)" >&2; exit 1; }
for b in "$ctl" "$echo_bin"; do [ -x "$b" ] || { echo "demo: $b missing; run make demo-ctl" >&2; exit 1; }; done

suffix=$$
laptop=demo-laptop-$suffix
server=demo-server-$suffix
tmp=$(mktemp -d)
cleanup() {
	for ns in "$laptop" "$server"; do
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

step "two namespaces, two links: wifi 10.1.1.0/24 and lte 10.1.2.0/24"
for ns in "$laptop" "$server"; do
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	in_ns "$ns" sysctl -q -w net.mptcp.enabled=1
done
ip -n "$laptop" link add wifi type veth peer name wifi-srv netns "$server"
ip -n "$laptop" link add lte type veth peer name lte-srv netns "$server"
ip -n "$laptop" addr add 10.1.1.2/24 dev wifi
ip -n "$laptop" addr add 10.1.2.2/24 dev lte
ip -n "$server" addr add 10.1.1.1/24 dev wifi-srv
ip -n "$server" addr add 10.1.2.1/24 dev lte-srv
for l in wifi lte; do ip -n "$laptop" link set "$l" up; ip -n "$server" link set "$l-srv" up; done
echo "laptop=$laptop server=$server"

step "program the laptop's in-kernel path manager with mptcpctl"
show "$ctl" -n "$laptop" limits set subflows 2 add_addr_accepted 2
show "$ctl" -n "$laptop" endpoint add 10.1.2.2 dev lte subflow backup
show "$ctl" -n "$laptop" endpoint show
show "$ctl" -n "$laptop" -j endpoint show
show "$ctl" -n "$laptop" limits show
show "$ctl" -n "$server" limits set subflows 2 add_addr_accepted 2

step "the same table through iproute2 (the oracle): no diff"
diff <(ip -n "$laptop" mptcp endpoint show) <("$ctl" -n "$laptop" endpoint show) && echo "endpoint show: identical"
diff <(ip -n "$laptop" mptcp limits show) <("$ctl" -n "$laptop" limits show) && echo "limits show: identical"

step "a 4 MB MPTCP transfer over wifi; the kernel opens a second subflow from the lte endpoint"
"$ctl" -n "$laptop" monitor >"$tmp/ctl.mon" &
ctl_mon=$!
ip -n "$laptop" mptcp monitor >"$tmp/ip.mon" &
ip_mon=$!
in_ns "$server" "$echo_bin" serve -lifetime 60s 10.1.1.1:5000 >"$tmp/server.log" &
for _ in $(seq 100); do grep -q ready "$tmp/server.log" 2>/dev/null && break; sleep 0.05; done
sleep 0.3 # both monitors have joined the event group by now
show in_ns "$laptop" "$echo_bin" dial -bytes 4000000 -subflows 1 -wait 10s 10.1.1.1:5000
sleep 0.5 # let CLOSED reach both monitors
kill "$ctl_mon" "$ip_mon" 2>/dev/null || true
wait "$ctl_mon" "$ip_mon" 2>/dev/null || true

step "what mptcpctl monitor printed"
cat "$tmp/ctl.mon"
step "diff against ip mptcp monitor on the same events"
diff "$tmp/ip.mon" "$tmp/ctl.mon" && echo "monitor: identical ($(wc -l <"$tmp/ctl.mon") lines)"

step "clean up"
show "$ctl" -n "$laptop" endpoint flush
show "$ctl" -n "$laptop" endpoint show
echo "namespaces removed on exit"
