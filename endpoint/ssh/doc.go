// Package ssh serves SSH over Multipath TCP with the system's own sshd.
//
// A Server listens on MPTCP sockets (which accept plain TCP clients too)
// and hands every accepted connection to a fresh `sshd -i` as its standard
// input and output, the way inetd and Debian's ssh.socket do. sshd
// therefore runs with its usual configuration, logs and limits, and sees
// the real client address with getpeername(2): per-address rules,
// fail2ban and the logs keep working, unlike behind a proxy.
//
// The Server never reads a byte from the network itself. What it guards is
// the step before sshd: at most MaxConnections sessions at once, at most
// MaxPerSource from one client address, and new connections at most Rate
// per second on average (bursts of Burst). A connection over a limit is
// reset at once and counted; one log line a second says how many were
// refused and why. Unauthenticated and silent clients are sshd's business
// (LoginGraceTime); the limits keep them from exhausting the host.
//
// Stopping the Server closes its listeners and leaves running sessions
// alone, as ssh.service does (KillMode=process): restarting the endpoint
// does not cut anyone off.
package ssh
