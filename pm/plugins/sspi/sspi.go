// Package sspi is the "single subflow per interface" plugin of the
// userspace path manager, registered as "sspi": on the connecting side it
// opens one subflow from each usable interface that has none to the
// peer's address, and closes any second subflow on one interface; on the
// accepting side it announces one address per usable interface.
package sspi

import (
	"errors"
	"slices"

	"github.com/mptcpd-go/mptcpd/pm"
)

// Name is the plugin's registered name.
const Name = "sspi"

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

func (p *plugin) ConnectionEstablished(c pm.Connection) { p.fill(c) }

func (p *plugin) LocalAddressAdded(pm.LocalAddr) {
	for c := range p.st.Connections() {
		p.fill(c)
	}
}

func (p *plugin) LocalAddressChanged(a pm.LocalAddr) { pm.ApplyBackup(p.cmd, p.st, a) }

func (p *plugin) LocalAddressRemoved(a pm.LocalAddr) { pm.Withdraw(p.cmd, p.st, a) }

// SubflowEstablished closes s when another established subflow of the
// connection uses its interface. The accepting side leaves the peer's
// joins alone: they are the peer's decision.
func (p *plugin) SubflowEstablished(c pm.Connection, s pm.Subflow) {
	if c.ServerSide() || s.IfIndex == 0 {
		return
	}
	for o := range c.Subflows() {
		if !o.Pending && o.IfIndex == s.IfIndex && (o.Local != s.Local || o.Remote != s.Remote) {
			_ = p.cmd.DestroySubflow(c.Token(), s) // the engine logs failures
			return
		}
	}
}

// SubflowClosed replaces a subflow whose address went with one from
// another address of the interface, if it has one. A subflow closed for
// other reasons (the peer refused it, a reset) is not reopened: that
// could loop.
func (p *plugin) SubflowClosed(c pm.Connection, s pm.Subflow) {
	if _, ok := pm.UsableAddr(p.st, s.Local.Addr()); !ok {
		p.fill(c)
	}
}

// fill gives an established connection what this plugin promises: a
// subflow (connecting side) or an announcement (accepting side) for each
// usable interface that has none.
func (p *plugin) fill(c pm.Connection) {
	if !c.Established() {
		return
	}
	var busy []int // interfaces with a subflow, or an announced address
	if c.ServerSide() {
		busy = append(busy, c.IfIndex())
		for a := range c.Announced() {
			busy = append(busy, a.IfIndex)
		}
	} else {
		for s := range c.Subflows() {
			busy = append(busy, s.IfIndex)
		}
	}
	remote := c.Remote()
	for a := range p.st.LocalAddrs() {
		if slices.Contains(busy, a.IfIndex) || !pm.FamiliesMatch(c, a.Addr, remote.Addr()) {
			continue
		}
		var err error
		if c.ServerSide() {
			err = p.cmd.Announce(c.Token(), a)
		} else {
			err = p.cmd.CreateSubflow(c.Token(), a, remote)
		}
		switch {
		case err == nil:
			busy = append(busy, a.IfIndex)
		case errors.Is(err, pm.ErrNoConnection):
			return
		}
		// Otherwise another address of the interface may do.
	}
}
