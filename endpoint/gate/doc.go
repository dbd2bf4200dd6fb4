// Package gate is the front door of mptcpd-go's endpoints (the SSH
// endpoint, the relay): it opens their listeners, MPTCP unless told
// otherwise, accepts with the back-off net/http uses when descriptors run
// out, and admits each connection within the limits an exposed service
// needs — connections at once, connections at once from one source (an
// IPv4 address or an IPv6 /64), and a token-bucket rate of new ones. A
// connection over a limit is reset at once and counted, and one log line
// a second says how many were refused and why, so that a flood costs a
// line a second rather than a line a connection.
package gate
