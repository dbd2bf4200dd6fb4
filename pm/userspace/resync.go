package userspace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
)

// Resync rebuilds the connection table from the kernel's list of
// connections (Config.Lister), telling the plugin what the events would
// have: connections gone are closed, new ones opened (and established),
// subflows that appeared or went established or closed. Run calls it after
// lost events; a daemon may call it now and then to catch what the events
// cannot tell (the peer's announcements are not in the kernel's list:
// those already known are kept).
func (e *Engine) Resync() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stale = true
	return e.resyncLocked()
}

// errNoLister is Resync's error without a Lister.
var errNoLister = errors.New("userspace: resync: no connection lister configured")

// resyncLocked does Resync with e.mu held. On failure the table stays
// marked stale and the next batch of events retries.
func (e *Engine) resyncLocked() error {
	if e.lister == nil {
		e.stale = false // nothing will ever make it better
		e.log.Warn("connection table may be stale: no connection lister to rebuild it from")
		return errNoLister
	}
	list, err := e.lister.Connections()
	if err != nil {
		e.log.Warn("cannot list connections to rebuild the table", "err", err)
		return fmt.Errorf("userspace: resync: %w", err)
	}
	e.stale = false
	e.stats.Resyncs++

	var listeners []netip.AddrPort
	for i := range list {
		if list[i].Listening() {
			listeners = append(listeners, list[i].Local)
		}
	}
	seen := make(map[mptcp.Token]bool, len(list))
	for i := range list {
		k := &list[i]
		if !managed(k) {
			continue
		}
		seen[k.Info.Token] = true
		c := e.table.get(k.Info.Token)
		if c == nil || !sameAddrPort(c.local, k.Local) || !sameAddrPort(c.remote, k.Remote) {
			if c != nil {
				e.plugin.ConnectionClosed(c)
				e.table.remove(c.token)
			}
			e.adopt(k, listeners)
			continue
		}
		c.resyncSubflows(k.Subflows)
		if k.State == mptcpdiag.StateEstablished && !c.established {
			c.established = true
			e.plugin.ConnectionEstablished(c)
		}
	}
	var gone []*conn
	for tok, c := range e.table.m {
		if !seen[tok] {
			gone = append(gone, c)
		}
	}
	for _, c := range gone {
		e.plugin.ConnectionClosed(c)
		e.table.remove(c.token)
	}
	e.log.Info("connection table rebuilt", "connections", len(e.table.m), "closed", len(gone))
	return nil
}

// managed reports whether k is a connection the path manager has events
// for: open (CREATED sent, CLOSED not yet), and not fallen back to TCP.
func managed(k *mptcpdiag.Connection) bool {
	if k.Info.Token == 0 || k.Info.Flags&mptcpdiag.InfoFallback != 0 {
		return false
	}
	switch k.State {
	case mptcpdiag.StateEstablished, mptcpdiag.StateFinWait1, mptcpdiag.StateFinWait2,
		mptcpdiag.StateCloseWait, mptcpdiag.StateClosing, mptcpdiag.StateLastAck:
		return true
	}
	return false
}

// adopt adds a connection found in the kernel's list. It is server side
// when a listener has its local port (and address, unless the listener's
// is a wildcard).
func (e *Engine) adopt(k *mptcpdiag.Connection, listeners []netip.AddrPort) {
	server := slices.ContainsFunc(listeners, func(l netip.AddrPort) bool {
		return l.Port() == k.Local.Port() && (l.Addr().IsUnspecified() || l.Addr().Unmap() == k.Local.Addr().Unmap())
	})
	c := &conn{e: e, token: k.Info.Token, local: k.Local, remote: k.Remote, serverSide: server}
	for i := range k.Subflows {
		c.subflows = append(c.subflows, diagSubflow(&k.Subflows[i]))
	}
	e.table.put(c)
	e.plugin.NewConnection(c)
	if k.State == mptcpdiag.StateEstablished {
		c.established, c.guessed = true, true
		e.plugin.ConnectionEstablished(c)
	}
}

func diagSubflow(s *mptcpdiag.Subflow) pm.Subflow {
	return pm.Subflow{
		Local:    s.Local,
		Remote:   s.Remote,
		LocalID:  s.LocalID,
		RemoteID: s.RemoteID,
		IfIndex:  s.IfIndex,
		Backup:   s.Backup(),
	}
}

// resyncSubflows makes c's established subflows those of the kernel's
// list. Pending ones stay: their join may still be under way.
func (c *conn) resyncSubflows(list []mptcpdiag.Subflow) {
	var closed []pm.Subflow
	c.subflows = slices.DeleteFunc(c.subflows, func(s pm.Subflow) bool {
		if s.Pending || slices.ContainsFunc(list, func(k mptcpdiag.Subflow) bool {
			return sameAddrPort(k.Local, s.Local) && sameAddrPort(k.Remote, s.Remote)
		}) {
			return false
		}
		closed = append(closed, s)
		return true
	})
	for _, s := range closed {
		if s.IfIndex == 0 {
			s.IfIndex = c.e.ifindexOf(s.Local.Addr())
		}
		c.e.plugin.SubflowClosed(c, s)
	}
	for i := range list {
		c.subflowUp(diagSubflow(&list[i]))
	}
}
