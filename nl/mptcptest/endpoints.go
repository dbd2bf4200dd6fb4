package mptcptest

import (
	"net/netip"
	"slices"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// The in-kernel path manager's endpoint table and limits
// (net/mptcp/pm_kernel.c). Every method here runs with Kernel.mu held.

const (
	maxEndpoints = mptcp.MPTCP_PM_ADDR_MAX_PERNS // MPTCP_PM_ADDR_MAX
	maxAddrID    = mptcp.MPTCP_PM_MAX_ADDR_ID
	maxLimit     = mptcp.MPTCP_PM_LIMITS_MAX
)

// entry is one endpoint, struct mptcp_pm_addr_entry.
type entry struct {
	id      mptcp.ID
	addr    netip.Addr // 4 bytes for AF_INET, 16 for AF_INET6 (maybe v4-mapped)
	port    uint16
	flags   mptcp.Flags
	ifindex int32
}

func (e *entry) family() uint16 {
	if e.addr.Is4() {
		return afInet
	}
	return afInet6
}

func (e *entry) endpoint() mptcp.Endpoint {
	return mptcp.Endpoint{ID: e.id, Addr: e.addr, Port: e.port, Flags: e.flags, IfIndex: int(e.ifindex)}
}

func entryFrom(a addrInfo) *entry {
	return &entry{id: a.id, addr: a.addr, port: a.port, flags: a.flags, ifindex: a.ifindex}
}

// usesPort is address_use_port: only signal-only endpoints are told apart
// by port, and only they may have one.
func usesPort(f mptcp.Flags) bool {
	return f&(mptcp.FlagSignal|mptcp.FlagSubflow) == mptcp.FlagSignal
}

// appendEntry is mptcp_pm_nl_append_new_local_addr: it checks the table
// size, the id and duplicates, allocates an id when needsID, and inserts e
// (endpoints with a port at the head of the list, others at the tail). An
// implicit endpoint with the same address is replaced when replace is set,
// and its id is returned without a change otherwise.
func (k *Kernel) appendEntry(e *entry, needsID, replace bool) (mptcp.ID, syscall.Errno) {
	// The kernel does not allocate ids like an IDR: next_id only grows,
	// wrapping to 1 once it reaches the maximum.
	if k.nextID == maxAddrID {
		k.nextID = 1
	}
	if len(k.list) >= maxEndpoints {
		return 0, unix.ERANGE
	}
	if k.idUsed[e.id] {
		return 0, unix.EBUSY
	}
	if !usesPort(e.flags) {
		e.port = 0
	}
	for i, cur := range k.list {
		if !sameAddr(cur.addr, e.addr) || cur.port != e.port {
			continue
		}
		// Only an implicit endpoint may be replaced, and only when no id
		// was asked for.
		if cur.flags&mptcp.FlagImplicit == 0 {
			return 0, unix.EEXIST
		}
		if e.id != 0 {
			return 0, unix.EINVAL
		}
		if !replace {
			return cur.id, 0
		}
		e.id = cur.id
		k.list = slices.Delete(k.list, i, i+1)
		break
	}
	if e.id == 0 && needsID {
		e.id = k.allocID()
		if e.id == 0 {
			return 0, unix.EINVAL
		}
	}
	k.idUsed[e.id] = true
	if int(e.id) > k.nextID {
		k.nextID = int(e.id)
	}
	if e.port != 0 {
		k.list = slices.Insert(k.list, 0, e)
	} else {
		k.list = append(k.list, e)
	}
	return e.id, 0
}

// allocID is find_next_zero_bit from next_id, retried once from 1; 0 means
// every id is taken.
func (k *Kernel) allocID() mptcp.ID {
	for {
		for id := k.nextID; id <= maxAddrID; id++ {
			if !k.idUsed[id] {
				return mptcp.ID(id)
			}
		}
		if k.nextID == 1 {
			return 0
		}
		k.nextID = 1
	}
}

// entryByID is __lookup_addr_by_id.
func (k *Kernel) entryByID(id mptcp.ID) *entry {
	for _, e := range k.list {
		if e.id == id {
			return e
		}
	}
	return nil
}

// entryByAddr is __lookup_addr: the first endpoint in list order with the
// address, comparing ports only for endpoints that have one.
func (k *Kernel) entryByAddr(a netip.Addr, port uint16) *entry {
	for _, e := range k.list {
		if sameAddr(e.addr, a) && (e.port == 0 || e.port == port) {
			return e
		}
	}
	return nil
}

// sortedEntries returns the endpoints by id, the order of the kernel's
// dump (it walks the id bitmap).
func (k *Kernel) sortedEntries() []*entry {
	out := slices.Clone(k.list)
	slices.SortFunc(out, func(a, b *entry) int { return int(a.id) - int(b.id) })
	return out
}

// removeEntry drops e from the list and frees its id, closing its
// listener.
func (k *Kernel) removeEntry(e *entry) {
	k.list = slices.DeleteFunc(k.list, func(x *entry) bool { return x == e })
	k.idUsed[e.id] = false
	k.closeListener(e)
}

// addAddr is mptcp_pm_nl_add_addr_doit.
func (k *Kernel) addAddr(r *request) *kerr {
	nest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	a, err := parseAddr(nest, true, true)
	if err != nil {
		return err
	}
	switch {
	case a.port != 0 && !usesPort(a.flags):
		return errAttr(unix.EINVAL, nest, "flags must have signal and not subflow when using port")
	case a.flags&mptcp.FlagSignal != 0 && a.flags&mptcp.FlagFullmesh != 0:
		return errAttr(unix.EINVAL, nest, "flags mustn't have both signal and fullmesh")
	case a.flags&mptcp.FlagImplicit != 0:
		return errAttr(unix.EINVAL, nest, "can't create IMPLICIT endpoint")
	}
	e := entryFrom(a)
	// The listening socket comes first, so its errors win over the table's.
	if e.port != 0 {
		if errno := k.openListener(e); errno != 0 {
			return errMsg(errno, "create listen socket error: %d", -int(errno))
		}
	}
	// Linux 6.18 allocates an id unless a non-zero one was given.
	if _, errno := k.appendEntry(e, e.id == 0, true); errno != 0 {
		k.closeListener(e)
		return errMsg(errno, "too many addresses or duplicate one: %d", -int(errno))
	}
	return nil
}

// openListener is mptcp_pm_nl_create_listen_socket: binding needs a local
// address and a free address and port.
func (k *Kernel) openListener(e *entry) syscall.Errno {
	if !k.isLocal(e.addr) {
		return unix.EADDRNOTAVAIL
	}
	for _, cur := range k.list {
		if cur.port == e.port && bindConflict(cur.addr, e.addr) {
			return unix.EADDRINUSE
		}
	}
	k.emitListener(mptcp.EventListenerCreated, e)
	return 0
}

// bindConflict tells whether listeners on a and b with the same port
// collide: same address, or a wildcard covering the other. 0.0.0.0 covers
// IPv4 (v4-mapped included); :: (dual-stack) covers everything.
func bindConflict(a, b netip.Addr) bool {
	covers := func(w, x netip.Addr) bool {
		switch {
		case w == netip.IPv6Unspecified():
			return true
		case w.Unmap() == netip.IPv4Unspecified():
			return x.Unmap().Is4()
		}
		return false
	}
	return sameAddr(a, b) || covers(a, b) || covers(b, a)
}

// closeListener releases e's listening socket, if it has one.
func (k *Kernel) closeListener(e *entry) {
	if e.port != 0 {
		k.emitListener(mptcp.EventListenerClosed, e)
	}
}

// isLocal tells whether an address could be bound, see SetLocalAddrs.
func (k *Kernel) isLocal(a netip.Addr) bool {
	a = a.Unmap()
	return k.localAddrs == nil || a.IsUnspecified() || k.localAddrs[a]
}

// delAddr is mptcp_pm_nl_del_addr_doit.
func (k *Kernel) delAddr(r *request) *kerr {
	nest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	a, err := parseAddr(nest, false, true)
	if err != nil {
		return err
	}
	// Id 0 names the initial subflows' address on each connection: nothing
	// in the table, and never an error.
	if a.id == 0 {
		return nil
	}
	e := k.entryByID(a.id)
	if e == nil {
		return errAttr(unix.EINVAL, nest, "address not found")
	}
	k.removeEntry(e)
	return nil
}

// flushAddrs is mptcp_pm_nl_flush_addrs_doit; the limits stay.
func (k *Kernel) flushAddrs(*request) *kerr {
	old := k.list
	k.list = nil
	k.idUsed = [maxAddrID + 1]bool{}
	k.nextID = 1
	for _, e := range old {
		k.closeListener(e)
	}
	return nil
}

// getAddr is mptcp_pm_nl_get_addr_doit.
func (k *Kernel) getAddr(r *request) ([]byte, *kerr) {
	nest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return nil, errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	a, err := parseAddr(nest, false, true)
	if err != nil {
		return nil, err
	}
	var e *entry
	if tok, ok := r.attrs[mptcp.MPTCP_PM_ATTR_TOKEN]; ok {
		e = k.userspaceEntry(tok, a.id)
	} else {
		e = k.entryByID(a.id)
	}
	// Every failure, a bad token included, ends in the same message.
	if e == nil {
		return nil, errAttr(unix.EINVAL, nest, "address not found")
	}
	return encodeAttrs(func(ae *netlink.AttributeEncoder) { encodeAddrNest(ae, e) }), nil
}

// dumpAddrs is mptcp_pm_nl_get_addr_dumpit.
func (k *Kernel) dumpAddrs(r *request) ([][]byte, *kerr) {
	var entries []*entry
	if tok, ok := r.attrs[mptcp.MPTCP_PM_ATTR_TOKEN]; ok {
		c, err := k.userspaceConn(tok)
		if err != nil {
			return nil, err
		}
		entries = c.dumpEntries()
	} else {
		entries = k.sortedEntries()
	}
	out := make([][]byte, 0, len(entries))
	for _, e := range entries {
		out = append(out, encodeAttrs(func(ae *netlink.AttributeEncoder) { encodeAddrNest(ae, e) }))
	}
	return out, nil
}

// setLimits is mptcp_pm_nl_set_limits_doit: both limits are checked
// before either changes.
func (k *Kernel) setLimits(r *request) *kerr {
	rcv, err := parseLimit(r, mptcp.MPTCP_PM_ATTR_RCV_ADD_ADDRS, k.addAddrAcceptMax)
	if err != nil {
		return err
	}
	sub, err := parseLimit(r, mptcp.MPTCP_PM_ATTR_SUBFLOWS, k.subflowsMax)
	if err != nil {
		return err
	}
	k.addAddrAcceptMax, k.subflowsMax = rcv, sub
	return nil
}

// parseLimit is parse_limit: an absent attribute keeps old.
func parseLimit(r *request, typ uint16, old uint32) (uint32, *kerr) {
	a, ok := r.attrs[typ]
	if !ok {
		return old, nil
	}
	v, _ := policyU32(a)
	if v > maxLimit {
		return 0, errAttr(unix.EINVAL, a, "limit greater than maximum (8)")
	}
	return v, nil
}

// getLimits is mptcp_pm_nl_get_limits_doit.
func (k *Kernel) getLimits(*request) ([]byte, *kerr) {
	return encodeAttrs(func(ae *netlink.AttributeEncoder) {
		ae.Uint32(mptcp.MPTCP_PM_ATTR_RCV_ADD_ADDRS, k.addAddrAcceptMax)
		ae.Uint32(mptcp.MPTCP_PM_ATTR_SUBFLOWS, k.subflowsMax)
	}), nil
}

// setFlags is mptcp_pm_set_flags: with a token it acts on one subflow of a
// userspace-PM connection, otherwise on an endpoint (mptcp_pm_nl_set_flags).
func (k *Kernel) setFlags(r *request) *kerr {
	nest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	loc, err := parseAddr(nest, false, true)
	if err != nil {
		return err
	}
	if _, ok := r.attrs[mptcp.MPTCP_PM_ATTR_TOKEN]; ok {
		return k.setSubflowFlags(r, nest, loc)
	}
	// Without a family the endpoint is named by id, else by address.
	var e *entry
	if loc.family == 0 {
		if loc.id == 0 {
			return errAttr(unix.EOPNOTSUPP, nest, "missing address ID")
		}
		e = k.entryByID(loc.id)
	} else {
		e = k.entryByAddr(loc.addr, loc.port)
	}
	if e == nil {
		return errAttr(unix.EINVAL, nest, "address not found")
	}
	if loc.flags&mptcp.FlagFullmesh != 0 && e.flags&(mptcp.FlagSignal|mptcp.FlagImplicit) != 0 {
		return errAttr(unix.EINVAL, nest, "invalid addr flags")
	}
	const mask = mptcp.FlagBackup | mptcp.FlagFullmesh
	e.flags = e.flags&^mask | loc.flags&mask
	return nil
}
