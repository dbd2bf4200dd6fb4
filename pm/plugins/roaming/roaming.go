// Package roaming is the laptop plugin of the userspace path manager,
// registered as "roaming": connections follow the usable interfaces as
// they come and go. A new address gets a subflow on every connection at
// once, an address that goes (or whose link loses carrier) loses its
// subflows and is removed at the peer, cellular links carry backup
// subflows, and a connection moves off a backup path only once a regular
// one is established (make before break).
package roaming

import (
	"errors"
	"net/netip"
	"os"
	"slices"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Name is the plugin's registered name.
const Name = "roaming"

func init() { pm.Register(Name, New) }

// New makes the plugin; it has no settings.
func New(env pm.Env) (pm.Plugin, error) {
	return &plugin{cmd: env.Commands, st: env.State, withdrawn: make(map[subflowKey]struct{})}, nil
}

type plugin struct {
	pm.PluginBase
	cmd pm.Commands
	st  pm.State
	// withdrawn are the subflows the plugin destroyed whose SUB_CLOSED
	// has not been read yet: they count for nothing, so that an address
	// that comes back meanwhile gets a new subflow at once.
	withdrawn map[subflowKey]struct{}
}

type subflowKey struct {
	tok           mptcp.Token
	local, remote netip.AddrPort
}

func key(c pm.Connection, s pm.Subflow) subflowKey { return subflowKey{c.Token(), s.Local, s.Remote} }

// backupClass reports whether subflows from a are backup ones: always on a
// cellular link (kind wwan), elsewhere when the policy's rule says so.
func backupClass(a pm.LocalAddr) bool { return a.Backup() || a.Kind == policy.KindWWAN }

func (p *plugin) ConnectionEstablished(c pm.Connection) {
	p.fill(c)
	p.demote(c)
}

func (p *plugin) ConnectionClosed(c pm.Connection) {
	for k := range p.withdrawn {
		if k.tok == c.Token() {
			delete(p.withdrawn, k)
		}
	}
}

// SubflowEstablished: a regular path is up, so backup-class subflows
// still in regular use can step down.
func (p *plugin) SubflowEstablished(c pm.Connection, _ pm.Subflow) { p.demote(c) }

// SubflowClosed only forgets a withdrawn subflow: the plugin replaces
// subflows when their address goes, and does not reopen one closed for
// another reason (the peer refused the join, a reset), so that a refusing
// peer cannot make it loop; the next network change tries again.
func (p *plugin) SubflowClosed(c pm.Connection, s pm.Subflow) { delete(p.withdrawn, key(c, s)) }

func (p *plugin) LocalAddressAdded(pm.LocalAddr) { p.fillAll() }

// LocalAddressChanged applies a change of a's backup class: a promotion
// at once, a demotion when the connection has a regular path.
func (p *plugin) LocalAddressChanged(a pm.LocalAddr) {
	for c := range p.st.Connections() {
		if !backupClass(a) {
			p.promote(c, a.Addr)
		}
		p.fill(c)
		p.demote(c)
	}
}

// LocalAddressRemoved withdraws a from every connection, then opens
// subflows from the interfaces' other addresses. The engine reports the
// addresses of a link that loses carrier (or goes down) removed too.
func (p *plugin) LocalAddressRemoved(a pm.LocalAddr) {
	for c := range p.st.Connections() {
		p.withdraw(c, a.Addr)
		p.fill(c)
	}
}

// LinkChanged retries the missing subflows of a usable link: a subflow
// that could not be opened may now be, e.g. once the link's default
// route came.
func (p *plugin) LinkChanged(l pm.Link) {
	if l.Usable {
		p.fillAll()
	}
}

func (p *plugin) fillAll() {
	for c := range p.st.Connections() {
		p.fill(c)
	}
}

// fill opens, on an established connection of the connecting side, a
// subflow to the peer from every usable interface that has none, from
// its first address of the connection's family; from a backup-class
// address it is a backup subflow.
func (p *plugin) fill(c pm.Connection) {
	if c.ServerSide() || !c.Established() {
		return
	}
	var covered []int
	for s := range c.Subflows() {
		if _, gone := p.withdrawn[key(c, s)]; gone {
			continue
		}
		if _, usable := pm.UsableAddr(p.st, s.Local.Addr()); usable {
			covered = append(covered, s.IfIndex)
		}
	}
	remote := c.Remote()
	for a := range p.st.LocalAddrs() {
		if slices.Contains(covered, a.IfIndex) || !pm.FamiliesMatch(c, a.Addr, remote.Addr()) {
			continue
		}
		if backupClass(a) {
			a.Flags |= mptcp.FlagBackup
		}
		err := p.cmd.CreateSubflow(c.Token(), a, remote)
		switch {
		case err == nil:
			covered = append(covered, a.IfIndex)
		case errors.Is(err, pm.ErrNoConnection):
			return
		}
		// Otherwise another address of the interface may do.
	}
}

// demote makes the established subflows from backup-class addresses
// backup ones, on the connecting side, but only while an established
// regular subflow from a regular address carries the connection: the
// last regular path is never demoted before its successor is up.
func (p *plugin) demote(c pm.Connection) {
	if c.ServerSide() {
		return
	}
	var regular bool
	var steps []pm.Subflow
	for s := range c.Subflows() {
		if s.Pending || s.Backup {
			continue
		}
		a, usable := pm.UsableAddr(p.st, s.Local.Addr())
		if _, gone := p.withdrawn[key(c, s)]; gone || !usable {
			continue
		}
		if backupClass(a) {
			steps = append(steps, s)
		} else {
			regular = true
		}
	}
	if !regular {
		return
	}
	for _, s := range steps {
		if err := p.cmd.SetBackup(c.Token(), s, true); errors.Is(err, pm.ErrNoConnection) {
			return
		}
	}
}

// promote makes the backup subflows from addr regular ones, on the
// connecting side.
func (p *plugin) promote(c pm.Connection, addr netip.Addr) {
	if c.ServerSide() {
		return
	}
	for s := range c.Subflows() {
		if !s.Pending && s.Backup && s.Local.Addr().Unmap() == addr {
			if err := p.cmd.SetBackup(c.Token(), s, false); errors.Is(err, pm.ErrNoConnection) {
				return
			}
		}
	}
}

// withdraw removes addr from connection c: REMOVE for each local id its
// subflows use, which tells the peer (RM_ADDR) and makes the kernel close
// them, then SUBFLOW_DESTROY for those still listed, whose SUB_CLOSED may
// be on its way already.
func (p *plugin) withdraw(c pm.Connection, addr netip.Addr) {
	var ids []mptcp.ID
	var live []pm.Subflow
	for s := range c.Subflows() {
		if s.Local.Addr().Unmap() != addr {
			continue
		}
		if _, gone := p.withdrawn[key(c, s)]; gone {
			continue
		}
		if !slices.Contains(ids, s.LocalID) {
			ids = append(ids, s.LocalID)
		}
		if !s.Pending {
			live = append(live, s)
		}
	}
	for _, id := range ids {
		if err := p.cmd.Remove(c.Token(), id); errors.Is(err, pm.ErrNoConnection) {
			return
		}
	}
	for _, s := range live {
		err := p.cmd.DestroySubflow(c.Token(), s)
		switch {
		case errors.Is(err, pm.ErrNoConnection):
			return
		case err == nil, errors.Is(err, os.ErrNotExist): // closed by the REMOVE
			p.withdrawn[key(c, s)] = struct{}{}
		}
	}
}
