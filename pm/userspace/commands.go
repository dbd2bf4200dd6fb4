package userspace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"syscall"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
)

// commands carries out a plugin's commands. They run inside callbacks,
// with the engine's mutex held.
type commands struct{ e *Engine }

var _ pm.Commands = commands{}

func (k commands) Announce(tok mptcp.Token, a pm.LocalAddr) error {
	const op = "announce"
	c, id, err := k.e.prepare(op, tok, a.Addr)
	if err != nil {
		return err
	}
	a.ID = id
	ep := mptcp.Endpoint{ID: id, Addr: a.Addr, Port: a.Port, Flags: mptcp.FlagSignal | a.Flags&mptcp.FlagBackup, IfIndex: a.IfIndex}
	if err := k.e.client.Announce(tok, ep); err != nil {
		return k.e.failed(op, tok, err)
	}
	if i := slices.IndexFunc(c.announced, func(x pm.LocalAddr) bool { return x.Addr == a.Addr }); i >= 0 {
		c.announced[i] = a
	} else {
		c.announced = append(c.announced, a)
	}
	return nil
}

func (k commands) Remove(tok mptcp.Token, id mptcp.ID) error {
	const op = "remove"
	c := k.e.table.get(tok)
	if c == nil {
		return k.e.noConn(op, tok)
	}
	if err := k.e.client.Remove(tok, id); err != nil {
		return k.e.failed(op, tok, err)
	}
	c.announced = slices.DeleteFunc(c.announced, func(x pm.LocalAddr) bool { return x.ID == id })
	return nil
}

// CreateSubflow sends the address's namespace id, or 0 from the initial
// subflow's address: the kernel knows that address as id 0 on this
// connection and would refuse it under another.
func (k commands) CreateSubflow(tok mptcp.Token, local pm.LocalAddr, remote netip.AddrPort) error {
	const op = "create subflow"
	c, id, err := k.e.prepare(op, tok, local.Addr)
	if err != nil {
		return err
	}
	if local.Addr == c.local.Addr().Unmap() {
		id = 0
	}
	ep := mptcp.Endpoint{ID: id, Addr: local.Addr, Flags: local.Flags & mptcp.FlagBackup, IfIndex: local.IfIndex}
	if err := k.e.client.CreateSubflow(tok, ep, remote); err != nil {
		return k.e.failed(op, tok, err)
	}
	c.subflows = append(c.subflows, pm.Subflow{
		Local:   netip.AddrPortFrom(local.Addr, 0),
		Remote:  remote,
		LocalID: id,
		IfIndex: local.IfIndex,
		Backup:  local.Backup(),
		Pending: true,
	})
	return nil
}

func (k commands) DestroySubflow(tok mptcp.Token, s pm.Subflow) error {
	const op = "destroy subflow"
	if k.e.table.get(tok) == nil {
		return k.e.noConn(op, tok)
	}
	if s.Pending {
		return fmt.Errorf("userspace: %s %v -> %v on token %v: not established yet", op, s.Local.Addr(), s.Remote, tok)
	}
	err := k.e.client.DestroySubflow(tok, s.Local, s.Remote)
	if errors.Is(err, os.ErrNotExist) && !tokenGone(err) {
		// Closed meanwhile (its SUB_CLOSED is on its way) or by a REMOVE.
		k.e.log.Debug("subflow already gone", "token", tok, "local", s.Local, "remote", s.Remote)
		return err
	}
	if err != nil {
		return k.e.failed(op, tok, err)
	}
	return nil
}

func (k commands) SetBackup(tok mptcp.Token, s pm.Subflow, backup bool) error {
	const op = "set backup"
	c := k.e.table.get(tok)
	if c == nil {
		return k.e.noConn(op, tok)
	}
	if err := k.e.client.SetSubflowBackup(tok, s.Local, s.Remote, backup); err != nil {
		return k.e.failed(op, tok, err)
	}
	// The kernel sends MP_PRIO but no event for a change asked for here.
	if i := c.findSubflow(s.Local, s.Remote); i >= 0 {
		c.subflows[i].Backup = backup
	}
	return nil
}

// prepare finds the connection of a command and the id of local address
// a.
func (e *Engine) prepare(op string, tok mptcp.Token, a netip.Addr) (*conn, mptcp.ID, error) {
	c := e.table.get(tok)
	if c == nil {
		return nil, 0, e.noConn(op, tok)
	}
	id, ok := e.ids.of(a.Unmap())
	if !ok {
		return nil, 0, e.failed(op, tok, fmt.Errorf("no free address id for %v", a))
	}
	return c, id, nil
}

// noConn is the error of a command for a connection that closed meanwhile,
// which is no news: logged at debug level only.
func (e *Engine) noConn(op string, tok mptcp.Token) error {
	e.log.Debug("command for a closed connection dropped", "op", op, "token", tok)
	return fmt.Errorf("userspace: %s on token %v: %w", op, tok, pm.ErrNoConnection)
}

// failed logs a refused command with its token and counts it. A
// connection the kernel no longer has (or no longer has established)
// closed before its CLOSED event was read: debug level only.
func (e *Engine) failed(op string, tok mptcp.Token, err error) error {
	e.stats.CommandErrors++
	if tokenGone(err) {
		e.log.Debug("command for a closed connection failed", "op", op, "token", tok, "err", err)
		return fmt.Errorf("userspace: %s on token %v: %w: %w", op, tok, pm.ErrNoConnection, err)
	}
	e.log.Warn("userspace PM command failed", "op", op, "token", tok, "err", err)
	return fmt.Errorf("userspace: %s on token %v: %w", op, tok, err)
}

// tokenGone reports whether the kernel refused a command because the
// connection is gone or going: no connection has the token (EINVAL
// "invalid token", mptcp_token_get_sock), or it is no longer established
// (ENOTCONN, "connect error: -107" from SUBFLOW_CREATE on a connection
// whose CLOSED is still queued; a churn of 20000 short connections saw
// ~1500 of them).
func tokenGone(err error) bool {
	var me *mptcp.Error
	if !errors.As(err, &me) {
		return false
	}
	return (me.Errno == syscall.EINVAL && me.Message == "invalid token") || me.Errno == syscall.ENOTCONN
}
