package mptcptest

import (
	"fmt"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// The userspace path manager's commands (net/mptcp/pm_userspace.c) on the
// connections the fake knows. Every method here runs with Kernel.mu held.

// Connection is an MPTCP connection of the fake namespace, known from
// AddConnection or from an injected CREATED or ESTABLISHED event.
type Connection struct {
	Token mptcp.Token
	// Local and Remote are the initial subflow's ends; Local's address
	// family is the connection's (an IPv4 connection takes only IPv4
	// subflows).
	Local, Remote netip.AddrPort
	// Userspace is set when the userspace path manager handles the
	// connection (net.mptcp.path_manager=userspace when it was created);
	// the userspace PM commands fail on other connections.
	Userspace bool
}

// Subflow is one subflow of a connection.
type Subflow struct {
	Local, Remote     netip.AddrPort
	LocalID, RemoteID mptcp.ID
	Backup            bool
	IfIndex           int
}

// connection is the fake's state of one msk.
type connection struct {
	Connection
	// established is set once the connection is fully established
	// (ESTABLISHED event): only then can subflows be added.
	established bool
	// local is userspace_pm_local_addr_list: the addresses announced or
	// used by SUBFLOW_CREATE, in insertion order.
	local    []*entry
	subflows []Subflow
}

func newConnection(c Connection, established bool) *connection {
	return &connection{
		Connection:  c,
		established: established,
		subflows:    []Subflow{{Local: c.Local, Remote: c.Remote}},
	}
}

// isV4 tells the msk's family: a v4-mapped initial subflow lives on an
// IPv6 socket.
func (c *connection) isV4() bool { return c.Local.Addr().Is4() }

// familiesMatch is mptcp_pm_addr_families_match for a dual-stack socket.
func (c *connection) familiesMatch(loc, rem netip.Addr) bool {
	locV4, remV4 := loc.Unmap().Is4(), rem.Unmap().Is4()
	if c.isV4() {
		return locV4 && remV4
	}
	return locV4 == remV4
}

// appendLocal is mptcp_userspace_pm_append_new_local_addr without id
// allocation (the commands that reach it name their ids): an entry with the
// same address and port or the same id must be exactly e.
func (c *connection) appendLocal(e *entry) bool {
	for _, cur := range c.local {
		addrMatch := sameAddr(cur.addr, e.addr) && cur.port == e.port
		idMatch := cur.id == e.id
		if addrMatch || idMatch {
			return addrMatch && idMatch
		}
	}
	c.local = append(c.local, e)
	return true
}

// deleteLocal is mptcp_userspace_pm_delete_local_addr: the first entry
// with the address, whatever its port.
func (c *connection) deleteLocal(a netip.Addr) {
	if i := slices.IndexFunc(c.local, func(e *entry) bool { return sameAddr(e.addr, a) }); i >= 0 {
		c.local = slices.Delete(c.local, i, i+1)
	}
}

// dumpEntries is what mptcp_userspace_pm_dump_addr lists: the first entry
// of each id, in list order.
func (c *connection) dumpEntries() []*entry {
	var seen [maxAddrID + 1]bool
	var out []*entry
	for _, e := range c.local {
		if !seen[e.id] {
			seen[e.id] = true
			out = append(out, e)
		}
	}
	return out
}

// userspaceConn is mptcp_userspace_pm_get_sock.
func (k *Kernel) userspaceConn(tok attr) (*connection, *kerr) {
	v, _ := policyU32(tok)
	c := k.conns[mptcp.Token(v)]
	if c == nil {
		return nil, errAttr(unix.EINVAL, tok, "invalid token")
	}
	if !c.Userspace {
		return nil, errAttr(unix.EINVAL, tok, "userspace PM not selected")
	}
	return c, nil
}

// requireConn checks the token attribute and finds its connection.
func (k *Kernel) requireConn(r *request) (*connection, *kerr) {
	tok, ok := r.attrs[mptcp.MPTCP_PM_ATTR_TOKEN]
	if !ok {
		return nil, errMissing(mptcp.MPTCP_PM_ATTR_TOKEN)
	}
	return k.userspaceConn(tok)
}

// userspaceEntry is mptcp_userspace_pm_get_addr.
func (k *Kernel) userspaceEntry(tok attr, id mptcp.ID) *entry {
	c, err := k.userspaceConn(tok)
	if err != nil {
		return nil
	}
	for _, e := range c.local {
		if e.id == id {
			return e
		}
	}
	return nil
}

// announce is mptcp_pm_nl_announce_doit.
func (k *Kernel) announce(r *request) *kerr {
	nest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	c, err := k.requireConn(r)
	if err != nil {
		return err
	}
	a, err := parseAddr(nest, true, true)
	if err != nil {
		return err
	}
	if a.id == 0 {
		return errAttr(unix.EINVAL, nest, "invalid addr id")
	}
	if a.flags&mptcp.FlagSignal == 0 {
		return errAttr(unix.EINVAL, nest, "invalid addr flags")
	}
	if !c.appendLocal(entryFrom(a)) {
		return errAttr(unix.EINVAL, nest, "did not match address and id")
	}
	return nil
}

// remove is mptcp_pm_nl_remove_doit.
func (k *Kernel) remove(r *request) *kerr {
	idAttr, ok := r.attrs[mptcp.MPTCP_PM_ATTR_LOC_ID]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_LOC_ID)
	}
	id, _ := policyU8(idAttr)
	c, err := k.requireConn(r)
	if err != nil {
		return err
	}
	notFound := errAttr(unix.EINVAL, idAttr, fmt.Sprintf("address with id %d not found", id))
	if id == 0 {
		// RM_ADDR for id 0 needs a subflow still using the initial address.
		if !slices.ContainsFunc(c.subflows, func(s Subflow) bool { return s.LocalID == 0 }) {
			return notFound
		}
		return nil
	}
	i := slices.IndexFunc(c.local, func(e *entry) bool { return e.id == mptcp.ID(id) })
	if i < 0 {
		return notFound
	}
	c.local = slices.Delete(c.local, i, i+1)
	return nil
}

// subflowRequest does what SUBFLOW_CREATE and SUBFLOW_DESTROY first do, in
// the kernel's order: both address nests present, a known token, a valid
// local address.
func (k *Kernel) subflowRequest(r *request) (c *connection, lnest, rnest attr, loc addrInfo, err *kerr) {
	lnest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR]
	if !ok {
		return nil, attr{}, attr{}, addrInfo{}, errMissing(mptcp.MPTCP_PM_ATTR_ADDR)
	}
	rnest, ok = r.attrs[mptcp.MPTCP_PM_ATTR_ADDR_REMOTE]
	if !ok {
		return nil, attr{}, attr{}, addrInfo{}, errMissing(mptcp.MPTCP_PM_ATTR_ADDR_REMOTE)
	}
	if c, err = k.requireConn(r); err != nil {
		return nil, attr{}, attr{}, addrInfo{}, err
	}
	if loc, err = parseAddr(lnest, true, true); err != nil {
		return nil, attr{}, attr{}, addrInfo{}, err
	}
	return c, lnest, rnest, loc, nil
}

// subflowCreate is mptcp_pm_nl_subflow_create_doit. The connect always
// succeeds from a local address; the fake then reports the subflow
// established at once (SUB_ESTABLISHED), as a real peer that accepts the
// join would.
func (k *Kernel) subflowCreate(r *request) *kerr {
	c, lnest, rnest, loc, err := k.subflowRequest(r)
	if err != nil {
		return err
	}
	if loc.flags&mptcp.FlagSignal != 0 {
		return errAttr(unix.EINVAL, lnest, "invalid addr flags")
	}
	loc.flags |= mptcp.FlagSubflow
	rem, err := parseAddr(rnest, true, false)
	if err != nil {
		return err
	}
	if !c.familiesMatch(loc.addr, rem.addr) {
		return errMsg(unix.EINVAL, "families mismatch")
	}
	e := entryFrom(loc)
	if !c.appendLocal(e) {
		return errAttr(unix.EINVAL, lnest, "did not match address and id")
	}
	sf, errno := k.connectSubflow(c, loc, rem.addrPort())
	if errno != 0 {
		c.deleteLocal(loc.addr)
		return errMsg(errno, "connect error: %d", -int(errno))
	}
	c.subflows = append(c.subflows, sf)
	k.emit(subflowEvent(mptcp.EventSubEstablished, c.Token, sf))
	return nil
}

// connectSubflow is __mptcp_subflow_connect up to the SYN: the connection
// must be fully established, the local address (and port) bindable; an
// ephemeral port is picked when none was given.
func (k *Kernel) connectSubflow(c *connection, loc addrInfo, remote netip.AddrPort) (Subflow, unix.Errno) {
	if !c.established {
		return Subflow{}, unix.ENOTCONN
	}
	if !k.isLocal(loc.addr) {
		return Subflow{}, unix.EADDRNOTAVAIL
	}
	port := loc.port
	if port == 0 {
		port = k.ephemeralPort()
	}
	local := netip.AddrPortFrom(loc.addr, port)
	for _, conn := range k.conns {
		if slices.ContainsFunc(conn.subflows, func(s Subflow) bool { return s.Local == local && s.Remote == remote }) {
			return Subflow{}, unix.EADDRINUSE
		}
	}
	return Subflow{
		Local:   local,
		Remote:  remote,
		LocalID: loc.id,
		Backup:  loc.flags&mptcp.FlagBackup != 0,
		IfIndex: int(loc.ifindex),
	}, 0
}

// ephemeralPort hands out ports from ip_local_port_range's default range.
func (k *Kernel) ephemeralPort() uint16 {
	const lo, hi = 32768, 60999
	if k.nextPort < lo || k.nextPort > hi {
		k.nextPort = lo
	}
	p := k.nextPort
	k.nextPort++
	return p
}

// subflowDestroy is mptcp_pm_nl_subflow_destroy_doit.
func (k *Kernel) subflowDestroy(r *request) *kerr {
	c, lnest, rnest, loc, err := k.subflowRequest(r)
	if err != nil {
		return err
	}
	rem, err := parseAddr(rnest, true, false)
	if err != nil {
		return err
	}
	// An IPv4 side facing a v4-mapped side is compared as v4-mapped.
	la, ra := loc.addr, rem.addr
	if la.Is4() && ra.Is4In6() {
		la = netip.AddrFrom16(la.As16())
	}
	if ra.Is4() && la.Is4In6() {
		ra = netip.AddrFrom16(ra.As16())
	}
	if la.Is4() != ra.Is4() {
		return errMsg(unix.EINVAL, "address families do not match")
	}
	if loc.port == 0 {
		return errAttr(unix.EINVAL, lnest, "missing local port")
	}
	if rem.port == 0 {
		return errAttr(unix.EINVAL, rnest, "missing remote port")
	}
	local, remote := netip.AddrPortFrom(la, loc.port), netip.AddrPortFrom(ra, rem.port)
	// mptcp_nl_find_ssk compares family, address and port exactly: a
	// subflow of an IPv6 socket to an IPv4 peer has v4-mapped ends.
	i := slices.IndexFunc(c.subflows, func(s Subflow) bool { return s.Local == local && s.Remote == remote })
	if i < 0 {
		return errMsg(unix.ESRCH, "subflow not found")
	}
	sf := c.subflows[i]
	c.deleteLocal(loc.addr)
	c.subflows = slices.Delete(c.subflows, i, i+1)
	k.emit(subflowEvent(mptcp.EventSubClosed, c.Token, sf))
	return nil
}

// setSubflowFlags is mptcp_userspace_pm_set_flags.
func (k *Kernel) setSubflowFlags(r *request, lnest attr, loc addrInfo) *kerr {
	rnest, ok := r.attrs[mptcp.MPTCP_PM_ATTR_ADDR_REMOTE]
	if !ok {
		return errMissing(mptcp.MPTCP_PM_ATTR_ADDR_REMOTE)
	}
	c, err := k.requireConn(r)
	if err != nil {
		return err
	}
	if loc.family == 0 {
		return errAttr(unix.EINVAL, lnest, "invalid local address family")
	}
	rem, err := parseAddr(rnest, true, false)
	if err != nil {
		return err
	}
	backup := loc.flags&mptcp.FlagBackup != 0
	for _, e := range c.local {
		if sameAddr(e.addr, loc.addr) {
			e.flags = e.flags&^mptcp.FlagBackup | loc.flags&mptcp.FlagBackup
			break
		}
	}
	// mptcp_pm_mp_prio_send_ack: the first subflow matching both ends,
	// ports compared only when given.
	for i, s := range c.subflows {
		if matchEnd(s.Local, loc.addr, loc.port) && matchEnd(s.Remote, rem.addr, rem.port) {
			c.subflows[i].Backup = backup
			return nil
		}
	}
	return errMsg(unix.EINVAL, "subflow not found")
}

func matchEnd(sock netip.AddrPort, a netip.Addr, port uint16) bool {
	return sameAddr(sock.Addr(), a) && (port == 0 || sock.Port() == port)
}

// trackEvent keeps the connection table in step with an injected event,
// as the kernel's own state would be when it sent it.
func (k *Kernel) trackEvent(ev *mptcp.Event) {
	c := k.conns[ev.Token]
	switch ev.Type {
	case mptcp.EventCreated, mptcp.EventEstablished:
		if c == nil {
			c = newConnection(Connection{
				Token:     ev.Token,
				Local:     netip.AddrPortFrom(ev.Saddr, ev.Sport),
				Remote:    netip.AddrPortFrom(ev.Daddr, ev.Dport),
				Userspace: k.userspacePM,
			}, false)
			k.conns[ev.Token] = c
		}
		if ev.Type == mptcp.EventEstablished {
			c.established = true
		}
	case mptcp.EventClosed:
		delete(k.conns, ev.Token)
	case mptcp.EventSubEstablished:
		if c != nil {
			c.subflows = append(c.subflows, Subflow{
				Local:    netip.AddrPortFrom(ev.Saddr, ev.Sport),
				Remote:   netip.AddrPortFrom(ev.Daddr, ev.Dport),
				LocalID:  ev.LocalID,
				RemoteID: ev.RemoteID,
				Backup:   ev.Backup,
				IfIndex:  ev.IfIndex,
			})
		}
	case mptcp.EventSubClosed, mptcp.EventSubPriority:
		if c == nil {
			return
		}
		local, remote := netip.AddrPortFrom(ev.Saddr, ev.Sport), netip.AddrPortFrom(ev.Daddr, ev.Dport)
		i := slices.IndexFunc(c.subflows, func(s Subflow) bool { return s.Local == local && s.Remote == remote })
		switch {
		case i < 0:
		case ev.Type == mptcp.EventSubClosed:
			c.subflows = slices.Delete(c.subflows, i, i+1)
		default:
			c.subflows[i].Backup = ev.Backup
		}
	}
}
