package pm

import (
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// Subflows stranded on a dead path.
//
// When an endpoint goes, or a plugin destroys a subflow, the kernel
// closes the subflow as TCP closes a socket: it queues a FIN behind the
// data the subflow still holds, detaches it from its connection, and
// the subflow goes on resending that data and the FIN by itself
// (FIN_WAIT1), backed off, for minutes (tcp_orphan_retries). The
// connection sent all its unacknowledged data again on its other
// subflows when it closed this one, so the copy has no use. On a dead
// path it does harm once the path is back, as when Wi-Fi comes back in
// range: the subflow floods the link with stale data just as a new
// subflow starts on it, and its resends while the link had no carrier
// kept the gateway's neighbour entry in resolution, failing, so that the
// new subflow's SYN waits in that entry and fails with it
// (EHOSTUNREACH). A failed join makes the connection send its whole
// unacknowledged data again over the subflows it has: on the testbed's
// move back to Wi-Fi a 115 ms stall, against 10 ms when nothing was
// closed.
//
// The daemon therefore aborts such subflows (SOCK_DESTROY), which sends
// a reset nobody receives and frees them.

// closingStates are the TCP states of a closed subflow that still has
// data or a FIN to resend. FIN_WAIT2 and TIME_WAIT send nothing.
var closingStates = mptcpdiag.StatesOf(mptcpdiag.StateFinWait1, mptcpdiag.StateClosing, mptcpdiag.StateLastAck)

// ClosingStates is the filter for a dump that Stranded needs.
func ClosingStates() mptcpdiag.States { return closingStates }

// Stranded lists the subflows of conns that are stranded on a dead path:
// closing (ClosingStates), of a connection that has not fallen back to
// plain TCP (whose one subflow carries the only copy of its data), from
// an address that n has on no usable link: an address gone, or on a link
// that is down, has no carrier or failed its health check. A subflow of
// a connection the kernel no longer lists is left alone too: nothing
// says its data was sent again.
func Stranded(conns []mptcpdiag.Connection, n Network) []mptcpdiag.Subflow {
	usable := usableAddrs(n)
	var out []mptcpdiag.Subflow
	for _, c := range conns {
		if c.Listening() || c.Info.Flags&mptcpdiag.InfoFallback != 0 {
			continue
		}
		for _, s := range c.Subflows {
			if closingStates.Has(s.State) && !usable[s.Local.Addr().Unmap()] {
				out = append(out, s)
			}
		}
	}
	return out
}

// usableAddrs are the addresses of n on usable links.
func usableAddrs(n Network) map[netip.Addr]bool {
	usable := make(map[netip.Addr]bool, len(n.Addrs))
	for _, a := range n.Addrs {
		if l, ok := n.Link(a.LinkIndex); ok && l.Usable {
			usable[a.Addr()] = true
		}
	}
	return usable
}

// LostPaths reports whether some address usable in before is not in
// after: gone, or its link no longer usable. That is when subflows may
// be stranded.
func LostPaths(before, after Network) bool {
	now := usableAddrs(after)
	for a := range usableAddrs(before) {
		if !now[a] {
			return true
		}
	}
	return false
}
