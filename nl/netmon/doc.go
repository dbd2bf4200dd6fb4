// Package netmon watches the links, addresses and routes of one network
// namespace and reports them as typed events (netip types, no netlink
// structs), for the daemon that derives MPTCP endpoints from them.
//
// # Event stream
//
// [Start] subscribes to rtnetlink link, address and route notifications
// on one socket, dumps the current state (on a second socket, so that dump
// replies never mix with notifications), and sends on [Monitor.Events]:
//
//	LinkEvent/AddrEvent/RouteEvent{Op: OpNew} for everything that exists,
//	Synced{}                                  the first full state is in,
//	LinkEvent/AddrEvent/RouteEvent ...         changes, as they happen.
//
// When notifications were lost (the socket overran its receive buffer,
// ENOBUFS; receiving failed) the monitor does not die and does not go on
// silently. It sends
//
//	ResyncNeeded{Reason}
//	OpDel events for every object that vanished meanwhile,
//	OpNew events for every object that exists (changed or not),
//	Synced{}
//
// after re-subscribing and dumping again (retrying with backoff if that
// fails). Both kinds of consumer end up with the kernel's state at Synced:
// one that keeps applying events to its [State] (never emptied, so nothing
// flaps), and one that starts from scratch at ResyncNeeded. Between
// ResyncNeeded and Synced the state is stale; decisions should wait for
// Synced ([State.Synced]).
//
// # What is reported
//
//   - Links: every link of the namespace. AF_BRIDGE port messages (which
//     also arrive as RTM_NEWLINK/RTM_DELLINK) are not link changes and are
//     ignored.
//   - Addresses: IPv4 and IPv6. A RTM_NEWADDR that changes nothing but the
//     remaining lifetimes is dropped as a duplicate: the kernel repeats
//     addresses on every router advertisement and reports lifetimes as
//     "seconds left at the time of the message", so comparing them would let
//     no duplicate through. A lifetime that turns finite or infinite is
//     reported, and expiry is visible anyway: a preferred lifetime running out
//     sets the Deprecated flag, a valid one deletes the address.
//   - Routes: unicast routes of every table except "local", without cloned
//     (cache) entries. A multipath route is reported as one Route per
//     nexthop. [Route.Default] marks default routes.
//
// The kernel removes some routes without a RTM_DELROUTE: IPv4 routes through
// a link that goes down or is deleted, and routes that depended on a deleted
// IPv4 address. After such events, and after a route replace, the monitor
// dumps the routes again once the notification queue is idle and reports
// the difference. Deleting a link also reports OpDel for its addresses and
// routes before the link itself.
//
// The three kinds travel on one socket, so events are in the kernel's
// order across kinds too: an address comes before the route it brings.
// The monitor adds its own events to that order: the deletions that
// precede a link's, and the results of a route dump after the queue went
// idle.
//
// # Latency
//
// The monitor's goroutine reads the socket itself, through Go's netpoller
// (github.com/mdlayher/netlink): it sleeps in epoll, not in a blocking
// system call, so a notification wakes one thread and goes from the
// socket to Events with no goroutine in between. Messages are decoded
// from the raw rtnetlink attributes by this package, the same way for
// notifications and dumps; a malformed one is logged and skipped.
package netmon
