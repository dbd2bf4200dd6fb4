// Package mptcp is a client for the Linux kernel's MPTCP path manager, the
// "mptcp_pm" generic netlink family: endpoints, limits, the userspace path
// manager commands, and the event stream. It is the only code in this
// module that reads or writes mptcp_pm netlink bytes.
//
// A Client sends requests on one socket and is safe for concurrent use; an
// EventListener receives mptcp_pm_events on a socket of its own. Both work
// inside any network namespace (Config.NetNS).
//
// Every error the kernel returns is an *Error carrying the errno and the
// kernel's extended-ack message; errors.Is maps it onto os.ErrExist,
// os.ErrNotExist, os.ErrPermission, ErrNotSupported and ErrEventsLost. No
// type of the netlink packages escapes this package.
package mptcp
