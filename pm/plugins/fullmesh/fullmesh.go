// Package fullmesh is the "full mesh" plugin of the userspace path
// manager, registered as "fullmesh": on the connecting side a subflow for
// every pair of a usable local address and a remote address (the
// connection's own and those the peer announced), up to the policy's
// subflows limit; on the accepting side it announces every usable
// address.
package fullmesh

import (
	"errors"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Name is the plugin's registered name.
const Name = "fullmesh"

func init() { pm.Register(Name, New) }

// New makes the plugin; it has no settings.
func New(env pm.Env) (pm.Plugin, error) {
	return &plugin{cmd: env.Commands, st: env.State}, nil
}

type plugin struct {
	pm.PluginBase
	cmd pm.Commands
	st  pm.State
}

// MaxSubflows is how many subflows besides the initial one a connection
// may have under p: the subflows limit when the policy fixes it, else 8,
// the most the kernel's own limit allows (auto derives the in-kernel
// limit from one subflow per endpoint, which a full mesh exceeds by
// design).
func MaxSubflows(p *policy.Policy) int {
	if p != nil && p.Settings.Subflows.Mode == policy.LimitFixed {
		return int(p.Settings.Subflows.Value)
	}
	return mptcp.MPTCP_PM_LIMITS_MAX
}

func (p *plugin) ConnectionEstablished(c pm.Connection)           { p.fill(c) }
func (p *plugin) AddressAnnounced(c pm.Connection, _ pm.PeerAddr) { p.fill(c) }

func (p *plugin) LocalAddressAdded(pm.LocalAddr) {
	for c := range p.st.Connections() {
		p.fill(c)
	}
}

func (p *plugin) LocalAddressChanged(a pm.LocalAddr) { pm.ApplyBackup(p.cmd, p.st, a) }

func (p *plugin) LocalAddressRemoved(a pm.LocalAddr) { pm.Withdraw(p.cmd, p.st, a) }

// SubflowClosed uses the room a subflow leaves when its local address
// went. A subflow closed for other reasons (the peer refused it, a reset)
// is not reopened: that could loop.
func (p *plugin) SubflowClosed(c pm.Connection, s pm.Subflow) {
	if _, ok := pm.UsableAddr(p.st, s.Local.Addr()); !ok {
		p.fill(c)
	}
}

// fill opens the missing pairs of an established connection (connecting
// side) or announces the addresses not announced yet (accepting side).
func (p *plugin) fill(c pm.Connection) {
	if !c.Established() {
		return
	}
	if c.ServerSide() {
		p.announce(c)
		return
	}
	room := MaxSubflows(p.st.Policy()) + 1 // the initial subflow counts too
	for range c.Subflows() {
		room--
	}
	remotes := []pm.PeerAddr{{Addr: c.Remote()}}
	for a := range c.PeerAddrs() {
		remotes = append(remotes, a)
	}
	for l := range p.st.LocalAddrs() {
		for _, r := range remotes {
			if room <= 0 {
				return
			}
			if !pm.FamiliesMatch(c, l.Addr, r.Addr.Addr()) || hasPair(c, l, r) {
				continue
			}
			err := p.cmd.CreateSubflow(c.Token(), l, r.Addr)
			switch {
			case err == nil:
				room--
			case errors.Is(err, pm.ErrNoConnection):
				return
			}
		}
	}
}

// hasPair reports whether c has a subflow, pending or not, from l to r.
func hasPair(c pm.Connection, l pm.LocalAddr, r pm.PeerAddr) bool {
	for s := range c.Subflows() {
		if s.Local.Addr().Unmap() == l.Addr && s.Remote.Addr().Unmap() == r.Addr.Addr().Unmap() && s.Remote.Port() == r.Addr.Port() {
			return true
		}
	}
	return false
}

// announce announces every usable address but the initial subflow's,
// which the peer knows.
func (p *plugin) announce(c pm.Connection) {
	done := map[mptcp.ID]bool{}
	for a := range c.Announced() {
		done[a.ID] = true
	}
	for a := range p.st.LocalAddrs() {
		if done[a.ID] || a.Addr == c.Local().Addr().Unmap() || !pm.FamiliesMatch(c, a.Addr, c.Remote().Addr()) {
			continue
		}
		if err := p.cmd.Announce(c.Token(), a); errors.Is(err, pm.ErrNoConnection) {
			return
		}
	}
}
