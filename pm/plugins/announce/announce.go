// Package announce is the accepting side's plugin of the userspace path
// manager, registered as "announce": it announces to the peer of every
// accepted connection the local addresses the policy gives the signal
// flag, and opens the MPTCP listeners the kernel needs to accept joins
// to them where no listener covers them yet.
package announce

import (
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"syscall"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// Name is the plugin's registered name.
const Name = "announce"

func init() { pm.Register(Name, Factory(Sockets{})) }

// Listeners opens the MPTCP listening sockets the plugin needs.
type Listeners interface {
	// Listen opens an MPTCP listener bound to addr. An error that Is
	// syscall.EADDRINUSE means another socket holds addr already.
	Listen(addr netip.AddrPort) (io.Closer, error)
}

// Factory makes the plugin with l as its source of listeners; the
// registered plugin uses Sockets.
func Factory(l Listeners) pm.Factory {
	return func(env pm.Env) (pm.Plugin, error) {
		return &plugin{
			cmd:    env.Commands,
			st:     env.State,
			log:    env.Log,
			listen: l,
			heard:  make(map[netip.AddrPort]int),
			own:    make(map[netip.AddrPort]*listener),
			echo:   make(map[netip.AddrPort]int),
		}, nil
	}
}

type plugin struct {
	pm.PluginBase
	cmd    pm.Commands
	st     pm.State
	log    *slog.Logger
	listen Listeners

	// heard counts the MPTCP listeners the kernel reported, by address,
	// the plugin's own left out.
	heard map[netip.AddrPort]int
	// own are the listeners the plugin opened, with the connections
	// whose announcement needs them.
	own map[netip.AddrPort]*listener
	// echo counts the LISTENER_CREATED events of the plugin's own
	// listeners not read yet. They must not count in heard, or a
	// listener the plugin closed a moment ago would seem to cover its
	// address until its LISTENER_CLOSED is read. (That one finds heard
	// at 0: no other socket can listen on the address meanwhile.)
	echo map[netip.AddrPort]int
}

type listener struct {
	io.Closer
	users map[mptcp.Token]struct{}
}

func (p *plugin) ConnectionEstablished(c pm.Connection) { p.announce(c) }

func (p *plugin) ConnectionClosed(c pm.Connection) {
	for at := range p.own {
		p.release(at, c.Token())
	}
}

func (p *plugin) LocalAddressAdded(pm.LocalAddr) { p.announceAll() }

// LocalAddressChanged takes back the announcements of a that no longer
// match it (the signal flag gone, another port), applies its backup
// flag to the subflows using it and announces it where it is missing.
func (p *plugin) LocalAddressChanged(a pm.LocalAddr) {
	for c := range p.st.Connections() {
		for an := range c.Announced() {
			if an.Addr != a.Addr {
				continue
			}
			if !signals(a) || an.Port != a.Port {
				_ = p.cmd.Remove(c.Token(), an.ID) // the engine logs failures
				p.release(target(c, an), c.Token())
			}
			break // announced once at most, and Remove changed the list
		}
	}
	pm.ApplyBackup(p.cmd, p.st, a)
	p.announceAll()
}

// LocalAddressRemoved withdraws a (REMOVE) and closes the plugin's
// listeners on it: no connection can use them any more.
func (p *plugin) LocalAddressRemoved(a pm.LocalAddr) {
	pm.Withdraw(p.cmd, p.st, a)
	for at := range p.own {
		if at.Addr() == a.Addr {
			p.closeOwn(at)
		}
	}
}

func (p *plugin) ListenerCreated(at netip.AddrPort) {
	at = unmap(at)
	if !countDown(p.echo, at) {
		p.heard[at]++
	}
}

func (p *plugin) ListenerClosed(at netip.AddrPort) { countDown(p.heard, unmap(at)) }

// countDown takes one from m[k], if it is not 0, and reports whether it
// did. No zero stays in m.
func countDown(m map[netip.AddrPort]int, k netip.AddrPort) bool {
	switch n := m[k]; {
	case n == 0:
		return false
	case n == 1:
		delete(m, k)
	default:
		m[k] = n - 1
	}
	return true
}

func (p *plugin) announceAll() {
	for c := range p.st.Connections() {
		p.announce(c)
	}
}

// announce announces on an established accepted connection every usable
// signal address not announced yet, of the connection's family, but the
// connection's own address and port, which the peer knows.
func (p *plugin) announce(c pm.Connection) {
	if !c.ServerSide() || !c.Established() {
		return
	}
	done := make(map[netip.Addr]bool)
	for an := range c.Announced() {
		done[an.Addr] = true
	}
	for a := range p.st.LocalAddrs() {
		if !signals(a) || done[a.Addr] || !pm.FamiliesMatch(c, a.Addr, c.Remote().Addr()) {
			continue
		}
		at := target(c, a)
		if at == unmap(c.Local()) || !p.cover(at, c.Token()) {
			continue
		}
		if err := p.cmd.Announce(c.Token(), a); err != nil {
			p.release(at, c.Token())
			if errors.Is(err, pm.ErrNoConnection) {
				return
			}
		}
	}
}

// cover makes sure that an MPTCP listener covers at for connection tok,
// opening one if need be, and reports whether one does.
func (p *plugin) cover(at netip.AddrPort, tok mptcp.Token) bool {
	if l := p.own[at]; l != nil {
		l.users[tok] = struct{}{}
		return true
	}
	if p.covered(at) {
		return true
	}
	cl, err := p.listen.Listen(at)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		// A listener opened before the daemon heard of it, most likely
		// the server's own on a wildcard address.
		p.log.Debug("address of an announcement already listened on", "addr", at)
		return true
	case err != nil:
		p.log.Warn("cannot listen on an address to announce, not announced", "addr", at, "err", err)
		return false
	}
	p.own[at] = &listener{Closer: cl, users: map[mptcp.Token]struct{}{tok: {}}}
	p.echo[at]++
	return true
}

// covered reports whether a listener the kernel reported accepts joins
// to at: one bound to at, or to the wildcard address on at's port (the
// IPv6 one also takes IPv4, unless it is IPV6_V6ONLY, which the event
// does not tell).
func (p *plugin) covered(at netip.AddrPort) bool {
	any4 := netip.AddrPortFrom(netip.IPv4Unspecified(), at.Port())
	any6 := netip.AddrPortFrom(netip.IPv6Unspecified(), at.Port())
	return p.heard[at] > 0 || p.heard[any6] > 0 || (at.Addr().Is4() && p.heard[any4] > 0)
}

// release forgets that connection tok needs the plugin's listener on at,
// and closes the listener when no connection needs it any more.
func (p *plugin) release(at netip.AddrPort, tok mptcp.Token) {
	l := p.own[at]
	if l == nil {
		return
	}
	delete(l.users, tok)
	if len(l.users) == 0 {
		p.closeOwn(at)
	}
}

func (p *plugin) closeOwn(at netip.AddrPort) {
	if err := p.own[at].Close(); err != nil {
		p.log.Warn("cannot close listener", "addr", at, "err", err)
	}
	delete(p.own, at)
}

// signals reports whether the policy wants a announced: its rule has the
// signal flag.
func signals(a pm.LocalAddr) bool { return a.Flags&mptcp.FlagSignal != 0 }

// target is where the peer joins when a is announced on c: a's port, or
// the connection's own port when the rule gives none.
func target(c pm.Connection, a pm.LocalAddr) netip.AddrPort {
	port := a.Port
	if port == 0 {
		port = c.Local().Port()
	}
	return netip.AddrPortFrom(a.Addr, port)
}

func unmap(at netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(at.Addr().Unmap(), at.Port())
}
