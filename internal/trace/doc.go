// Package trace records what the links and MPTCP connections of a network
// namespace carry over time, and what happened to the links meanwhile, for
// `mptcpctl trace` and `mptcpctl plot`: an I/O graph of a handover.
//
// # Sampling
//
// A [Sampler] reads, every interval (one round), the byte and packet
// counters of every link (rtnetlink, IFLA_STATS64: /sys is not per
// namespace), and the byte counters of every MPTCP connection (struct
// mptcp_info, Linux 6.7+) and of each of its TCP subflows (struct
// tcp_info), through nl/mptcpdiag. A subflow belongs to the link it is
// bound to, else to the link that holds its local address (0 when no
// link, or more than one, holds it: on a server every join to the
// listener's address has that address, so there the attribution says
// little). Between rounds it records link events from nl/netmon as they
// arrive: a link appearing or going, going up or down, gaining or losing
// its carrier, an address added or removed; and the notes the recording
// program adds (Note), such as the steps of a scripted walk. Run writes
// the rounds and the events; Watch hands them over instead, each round
// with the links' state and the connections as sock_diag listed them, to
// a live view (`mptcpctl top`).
//
// # Records
//
// A trace is a sequence of [Record]s in time order, written by a [Writer]
// as CSV (a header line, then one row per record) or as JSON lines (one
// object per record, empty fields left out), and read back by a [Reader],
// which tells the two apart by the first byte. The columns, in order:
//
//	time         RFC 3339 with nanoseconds, UTC; every row of one round has
//	             the round's time
//	kind         link, conn, subflow or event
//	ifindex      the link (link, event); the subflow's link, empty when
//	             unknown
//	dev          the link's name then
//	token        conn, subflow: the connection's token, 8 hex digits
//	local        conn, subflow: ADDR:PORT ([ADDR]:PORT for IPv6)
//	remote       conn, subflow
//	rx_bytes     bytes received: link (all traffic), conn (at the MPTCP
//	             level, mptcpi_bytes_received), subflow (tcpi_bytes_received)
//	tx_bytes     bytes sent, retransmissions included: link, conn
//	             (mptcpi_bytes_sent), subflow (tcpi_bytes_sent)
//	acked_bytes  conn (mptcpi_bytes_acked), subflow (tcpi_bytes_acked)
//	rx_packets   link
//	tx_packets   link
//	event        event: link-added, link-removed, up, down, carrier,
//	             no-carrier, addr-added, addr-removed, resync, note
//	detail       addr-added, addr-removed: the address with its prefix
//	             length; resync: why events were lost; note: its text
//
// The counters are the kernel's, cumulative since the link or socket was
// created. A resync row says rtnetlink notifications were lost: the event
// rows after it, up to the next round, report changes found by comparing
// dumps, at the time they were found rather than when they happened.
//
// The format is stable: readers find columns by their names in the header
// (JSON: by key) and ignore names they do not know, so later versions may
// add columns, never rename or reorder the meaning of these.
//
// # Rates
//
// [Rates] turns the counters into bit rates per link, connection and
// subflow, from one round to the next. A series that is missing from a
// round (a link that went away, a subflow that closed, a failed dump)
// resumes with a gap; a counter that went down (a socket recreated with
// the same addresses) counts from zero again.
package trace
