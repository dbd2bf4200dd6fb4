package userspace

import (
	"net/netip"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// ids hands out local address ids, one per address for the whole
// namespace, so that an address has the same id on every connection (the
// kernel refuses an address under two ids on one connection, or two
// addresses under one id: EINVAL "did not match address and id").
//
// An address that stops being usable frees its id but stays its holder:
// if it comes back before the id is needed for another address, it gets
// the same id again, which the connections that still list it expect.
// New ids are taken round-robin, never-used ones first, so that a freed
// id is given to another address as late as possible.
type ids struct {
	byAddr map[netip.Addr]mptcp.ID
	holder [mptcp.MPTCP_PM_MAX_ADDR_ID + 1]netip.Addr // last address of each id
	live   [mptcp.MPTCP_PM_MAX_ADDR_ID + 1]bool       // held by a usable address
	next   mptcp.ID
}

func newIDs() *ids { return &ids{byAddr: make(map[netip.Addr]mptcp.ID), next: 1} }

// acquire returns a's id and marks it in use; false when all 255 are.
func (x *ids) acquire(a netip.Addr) (mptcp.ID, bool) {
	id, ok := x.of(a)
	if ok {
		x.live[id] = true
	}
	return id, ok
}

// release frees a's id, which a keeps until another address needs it.
func (x *ids) release(a netip.Addr) {
	if id, ok := x.byAddr[a]; ok {
		x.live[id] = false
	}
}

// of returns a's id, giving it one (not marked in use) if it has none;
// false when every id is in use.
func (x *ids) of(a netip.Addr) (mptcp.ID, bool) {
	if id, ok := x.byAddr[a]; ok {
		return id, true
	}
	id, ok := x.pick()
	if !ok {
		return 0, false
	}
	if old := x.holder[id]; old.IsValid() {
		delete(x.byAddr, old)
	}
	x.holder[id] = a
	x.byAddr[a] = id
	return id, true
}

// pick chooses a free id: the next never-used one, else the next free
// one remembered for an address that went.
func (x *ids) pick() (mptcp.ID, bool) {
	const n = mptcp.MPTCP_PM_MAX_ADDR_ID
	for _, fresh := range []bool{true, false} {
		for i := range n {
			id := mptcp.ID((int(x.next)-1+i)%n + 1)
			if x.live[id] || (fresh && x.holder[id].IsValid()) {
				continue
			}
			x.next = id%n + 1
			return id, true
		}
	}
	return 0, false
}
