package userspace

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// ConnInfo is a copy of one connection's entry in the engine's table,
// for display: it shares nothing with the engine.
type ConnInfo struct {
	Token         mptcp.Token
	Local, Remote netip.AddrPort // the initial subflow's ends
	ServerSide    bool
	Established   bool
	PeerAddrs     []pm.PeerAddr  // announced by the peer, not removed
	Subflows      []pm.Subflow   // as pm.Connection.Subflows, pending ones included
	Announced     []pm.LocalAddr // announced by the plugin, not removed
}

// Connections returns a copy of the connection table, by token. It holds
// the engine's mutex while copying, so events wait that long.
func (e *Engine) Connections() []ConnInfo {
	e.mu.Lock()
	out := make([]ConnInfo, 0, len(e.table.m))
	for _, c := range e.table.m {
		out = append(out, ConnInfo{
			Token:       c.token,
			Local:       c.local,
			Remote:      c.remote,
			ServerSide:  c.serverSide,
			Established: c.established,
			PeerAddrs:   slices.Clone(c.peers),
			Subflows:    slices.Collect(c.Subflows()),
			Announced:   slices.Clone(c.announced),
		})
	}
	e.mu.Unlock()
	slices.SortFunc(out, func(a, b ConnInfo) int { return cmp.Compare(a.Token, b.Token) })
	return out
}
