package mptcp

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Request encoding. The kernel parses the address nest in
// mptcp_pm_parse_pm_addr_attr/mptcp_pm_parse_entry (net/mptcp/pm_netlink.c):
// an absent attribute means zero. Optional fields are sent only when
// non-zero, as iproute2 does (the kernel allocates an id for ADD_ADDR when
// the ID is absent or 0).

// addrNest describes one MPTCP_PM_ATTR_ADDR / ADDR_REMOTE nest.
type addrNest struct {
	addr    netip.Addr // sent as FAMILY + ADDR4/ADDR6 when valid
	id      ID
	sendID  bool // send ID even when 0 (DEL_ADDR, GET_ADDR name by id)
	port    uint16
	flags   Flags
	ifIndex int
}

// encode appends the nest's attributes in the order FAMILY, ID, ADDR4/6,
// PORT, FLAGS, IF_IDX.
func (n addrNest) encode(ae *netlink.AttributeEncoder) error {
	if n.addr.IsValid() {
		ae.Uint16(MPTCP_PM_ADDR_ATTR_FAMILY, addrFamily(n.addr))
	}
	if n.sendID || n.id != 0 {
		ae.Uint8(MPTCP_PM_ADDR_ATTR_ID, uint8(n.id))
	}
	if n.addr.IsValid() {
		if n.addr.Is4() {
			b := n.addr.As4()
			ae.Bytes(MPTCP_PM_ADDR_ATTR_ADDR4, b[:])
		} else {
			b := n.addr.As16()
			ae.Bytes(MPTCP_PM_ADDR_ATTR_ADDR6, b[:])
		}
	}
	if n.port != 0 {
		// Host byte order, unlike the event attributes.
		ae.Uint16(MPTCP_PM_ADDR_ATTR_PORT, n.port)
	}
	if n.flags != 0 {
		ae.Uint32(MPTCP_PM_ADDR_ATTR_FLAGS, uint32(n.flags))
	}
	if n.ifIndex != 0 {
		ae.Int32(MPTCP_PM_ADDR_ATTR_IF_IDX, int32(n.ifIndex))
	}
	return nil
}

// addrFamily is AF_INET for IPv4 and AF_INET6 otherwise: a 4-in-6 address
// stays IPv6, as `ip mptcp` treats "::ffff:a.b.c.d".
func addrFamily(a netip.Addr) uint16 {
	if a.Is4() {
		return unix.AF_INET
	}
	return unix.AF_INET6
}

// endpointNest is the nest for a local endpoint: every field of e.
func endpointNest(e Endpoint) addrNest {
	return addrNest{addr: e.Addr, id: e.ID, port: e.Port, flags: e.Flags, ifIndex: e.IfIndex}
}

// addrPortNest is the nest for an address and optional port.
func addrPortNest(ap netip.AddrPort) addrNest {
	return addrNest{addr: ap.Addr(), port: ap.Port()}
}

// requireAddr rejects an invalid (zero) address before anything is sent:
// the kernel would answer with a vaguer "missing family".
func requireAddr(op, what string, a netip.Addr) error {
	if !a.IsValid() {
		return fmt.Errorf("mptcp: %s: %s address is not set", op, what)
	}
	return nil
}
