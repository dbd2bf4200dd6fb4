// Package mptcpdiag lists the kernel's MPTCP connections and their TCP
// subflows through sock_diag (NETLINK_SOCK_DIAG, inet_diag), the interface
// `ss -M` and `ss -ti` use. It is the only code in this module that reads
// inet_diag bytes.
//
// A Client dumps the MPTCP sockets of its namespace (struct mptcp_info per
// connection), then the TCP sockets, keeps those whose upper-layer protocol
// is "mptcp", and attaches each to its connection by token. The kernel
// reports a TCP socket's ULP only to callers with CAP_NET_ADMIN in the
// namespace: without it, connections come back with no subflows.
//
// Decoding is pure (parse.go) and fuzzed; the client works on Linux only
// and returns an error elsewhere.
package mptcpdiag
