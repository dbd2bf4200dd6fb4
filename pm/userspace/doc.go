// Package userspace runs a pm.Plugin over the kernel's userspace path
// manager (net.mptcp.path_manager=userspace): it reads the mptcp_pm
// events, keeps the state of every connection, calls the plugin's
// callbacks and carries out its commands.
//
// The state is a table of connections (addresses and ids, the peer's
// announced addresses, the subflows with their interfaces and backup
// flags) from which CLOSED drops an entry, so that memory follows the
// number of open connections, not how many came and went. When the kernel
// drops events (a full socket buffer) the table is rebuilt from the
// kernel's own list of connections (mptcp_diag).
package userspace
