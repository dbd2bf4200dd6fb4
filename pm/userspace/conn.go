package userspace

import (
	"iter"
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// conn is the engine's state of one connection; it is the pm.Connection
// plugins see.
type conn struct {
	e                       *Engine
	token                   mptcp.Token
	local, remote           netip.AddrPort
	serverSide, established bool
	// guessed: established was inferred from the socket state when the
	// connection was adopted from mptcp_diag; MPTCP may not have been
	// fully established yet (commands then fail with ENOTCONN), so the
	// ESTABLISHED event that follows is passed on after all.
	guessed   bool
	peers     []pm.PeerAddr
	subflows  []pm.Subflow // the initial one first while it lives
	announced []pm.LocalAddr
}

var _ pm.Connection = (*conn)(nil)

func (c *conn) Token() mptcp.Token               { return c.token }
func (c *conn) Local() netip.AddrPort            { return c.local }
func (c *conn) Remote() netip.AddrPort           { return c.remote }
func (c *conn) IfIndex() int                     { return c.e.ifindexOf(c.local.Addr()) }
func (c *conn) ServerSide() bool                 { return c.serverSide }
func (c *conn) Established() bool                { return c.established }
func (c *conn) PeerAddrs() iter.Seq[pm.PeerAddr] { return slices.Values(c.peers) }

func (c *conn) Announced() iter.Seq[pm.LocalAddr] { return slices.Values(c.announced) }

// Subflows yields copies, with the interface filled in from the current
// network when the kernel named none.
func (c *conn) Subflows() iter.Seq[pm.Subflow] {
	return func(yield func(pm.Subflow) bool) {
		for _, s := range c.subflows {
			if s.IfIndex == 0 {
				s.IfIndex = c.e.ifindexOf(s.Local.Addr())
			}
			if !yield(s) {
				return
			}
		}
	}
}

// sameAddrPort compares two socket ends, an IPv4 one and its v4-mapped
// form being the same: events and diag dumps of IPv6 sockets use the
// mapped form.
func sameAddrPort(a, b netip.AddrPort) bool {
	return a.Port() == b.Port() && a.Addr().Unmap() == b.Addr().Unmap()
}

// findSubflow returns the index of the established subflow
// local->remote, -1 when there is none.
func (c *conn) findSubflow(local, remote netip.AddrPort) int {
	return slices.IndexFunc(c.subflows, func(s pm.Subflow) bool {
		return !s.Pending && sameAddrPort(s.Local, local) && sameAddrPort(s.Remote, remote)
	})
}

// findPending returns the index of the pending subflow that a subflow
// local->remote resolves: same local address, any port.
func (c *conn) findPending(local, remote netip.AddrPort) int {
	return slices.IndexFunc(c.subflows, func(s pm.Subflow) bool {
		return s.Pending && s.Local.Addr().Unmap() == local.Addr().Unmap() && sameAddrPort(s.Remote, remote)
	})
}

// table holds the connections by token. Go maps never give memory back,
// so one that held many connections is rebuilt once most have gone:
// memory follows the connections open now, not the peak.
type table struct {
	m    map[mptcp.Token]*conn
	peak int // most entries since m was made
}

// minRebuild is the peak below which a map is not worth rebuilding.
const minRebuild = 1024

func newTable() table { return table{m: make(map[mptcp.Token]*conn)} }

func (t *table) get(tok mptcp.Token) *conn { return t.m[tok] }

func (t *table) put(c *conn) {
	t.m[c.token] = c
	t.peak = max(t.peak, len(t.m))
}

func (t *table) remove(tok mptcp.Token) {
	delete(t.m, tok)
	if t.peak >= minRebuild && len(t.m) < t.peak/4 {
		m := make(map[mptcp.Token]*conn, len(t.m))
		for k, v := range t.m {
			m[k] = v
		}
		t.m, t.peak = m, len(m)
	}
}
