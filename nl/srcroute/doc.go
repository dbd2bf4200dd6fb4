// Package srcroute installs per-interface source-routing tables and policy
// rules, so that MPTCP subflows bound to an address of a non-default
// interface leave through that interface instead of the main table's
// default route.
//
// For each [Spec] the [Manager] keeps, in table Spec.Table,
//
//	default via GATEWAY dev LINK                   one per gateway family
//	default dev LINK scope link                    a family with addresses but no gateway
//	PREFIX dev LINK src ADDR scope link            one per connected prefix
//
// and one rule per address
//
//	priority PRIORITY from ADDR/32 (or /128) lookup TABLE
//
// # Ownership
//
// Everything it installs carries [Protocol] (rtm_protocol on routes,
// FRA_PROTOCOL on rules), and everything carrying it outside the kernel's own
// tables (local, main, default) counts as the manager's. A restarted daemon
// thus finds what it installed earlier without a state file, and never
// touches routes or rules someone else added, even in the same table: the
// kernel itself matches the protocol when deleting.
//
// # Reconciling
//
// [Manager.Apply] reads the marked routes and rules of all tables and both
// families, computes the minimal difference with the wanted ones, and
// removes stale objects (rules first) before adding missing ones (connected
// routes before the default routes whose gateways they make reachable,
// rules last). Applying the same input twice changes nothing. A failed
// object does not stop the others; Apply reports each failure with the
// route or rule it concerns. [Manager.Clear] removes everything marked.
//
// # Kernel details the input must respect
//
//   - Addresses sharing a prefix on one link share one connected route; its
//     src is the lowest of them, so the route does not flap with the order
//     addresses are listed in.
//   - IPv6 routes have no scope (the kernel reports them all as global), so
//     the IPv6 connected route carries none.
//   - The kernel refuses an IPv6 src that is still tentative (duplicate
//     address detection running): pass only addresses that are usable.
//   - A destination can have only one route per table, so two specs sharing
//     a table must not share a prefix or a gateway family.
package srcroute
