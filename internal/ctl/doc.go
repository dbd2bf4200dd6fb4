// Package ctl is mptcpctl: the grammar, output and exit statuses of
// iproute2's `ip mptcp` over the nl/mptcp client, as a cobra command tree
// whose keyword arguments, text and JSON output are testable without root,
// and its own policy commands, which check, show and explain mptcpd-go's
// policy for a namespace.
package ctl
