// Package ctl is mptcpctl: the grammar, output and exit statuses of
// iproute2's `ip mptcp` over the nl/mptcp client, as a cobra command tree
// whose keyword arguments, text and JSON output are testable without root,
// and its own commands: policy, which checks, shows and explains
// mptcpd-go's policy for a namespace, connections, which lists the
// kernel's MPTCP connections and their subflows (with the running
// daemon's view when one answers), userspace, which sends the userspace
// path manager's commands by hand, and status, explain, events and
// reload, which ask the running mptcpd through its control socket
// (internal/control).
package ctl
