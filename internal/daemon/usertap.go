package daemon

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
)

// The userspace mode's taps: between the engine and the kernel, they show
// the control socket's clients the kernel's events and the plugin's
// commands, and remember each connection's latest commands for
// `mptcpctl connections`. The engine itself is unchanged by them.

const (
	// maxCommands is how many commands are kept per connection.
	maxCommands = 16
	// maxTracked bounds the connections with a command history: beyond
	// it, those the engine no longer has (their CLOSED was lost) go.
	maxTracked = 1 << 16
)

// commandLog holds the latest commands of each open connection. It is
// safe for concurrent use.
type commandLog struct {
	mu     sync.Mutex
	byTok  map[mptcp.Token][]control.Command
	closed []mptcp.Token // CLOSED in the batch being handled
}

func newCommandLog() *commandLog {
	return &commandLog{byTok: make(map[mptcp.Token][]control.Command)}
}

func (l *commandLog) add(tok mptcp.Token, cmd control.Command) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cmds := l.byTok[tok]
	if len(cmds) == maxCommands {
		cmds = slices.Delete(cmds, 0, 1)
	}
	l.byTok[tok] = append(cmds, cmd)
}

// of returns a copy of tok's commands, oldest first; never nil.
func (l *commandLog) of(tok mptcp.Token) []control.Command {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]control.Command{}, l.byTok[tok]...)
}

// received notes the CLOSED events of a batch the engine is about to
// handle; their connections are forgotten when the next batch is read,
// after the plugin's last commands for them.
func (l *commandLog) received(evs []mptcp.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, tok := range l.closed {
		delete(l.byTok, tok)
	}
	l.closed = l.closed[:0]
	for i := range evs {
		if evs[i].Type == mptcp.EventClosed {
			l.closed = append(l.closed, evs[i].Token)
		}
	}
}

// size is the number of connections with a history.
func (l *commandLog) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byTok)
}

// keepOnly forgets the connections open does not list.
func (l *commandLog) keepOnly(open []userspace.ConnInfo) {
	keep := make(map[mptcp.Token]bool, len(open))
	for _, c := range open {
		keep[c.Token] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for tok := range l.byTok {
		if !keep[tok] {
			delete(l.byTok, tok)
		}
	}
}

// eventTap is the engine's event source: the mptcp_pm listener, its
// events also reported to the control plane. Receive is never called
// with the engine's lock held, so it may ask the engine for its table.
type eventTap struct {
	*mptcp.EventListener
	ctl      *controlPlane
	commands *commandLog
	eng      *userspace.Engine // set before the engine runs
}

func (t *eventTap) Receive() ([]mptcp.Event, error) {
	if t.commands.size() > maxTracked {
		t.commands.keepOnly(t.eng.Connections())
	}
	evs, err := t.EventListener.Receive()
	t.commands.received(evs)
	t.ctl.mptcpEvents(evs)
	return evs, err
}

// commandTap is the engine's client: the kernel's, each command also
// recorded and reported.
type commandTap struct {
	userspace.Client
	plugin   string
	ctl      *controlPlane
	commands *commandLog
}

func (t *commandTap) record(tok mptcp.Token, cmd control.Command, err error) error {
	cmd.Time = time.Now()
	if err != nil {
		cmd.Error = err.Error()
	}
	t.commands.add(tok, cmd)
	t.ctl.commandEvent(t.plugin, tok, cmd)
	return err
}

func (t *commandTap) Announce(tok mptcp.Token, e mptcp.Endpoint) error {
	return t.record(tok, control.Command{Op: control.OpAnnounce, ID: e.ID, Local: netip.AddrPortFrom(e.Addr, e.Port)},
		t.Client.Announce(tok, e))
}

func (t *commandTap) Remove(tok mptcp.Token, id mptcp.ID) error {
	return t.record(tok, control.Command{Op: control.OpRemove, ID: id}, t.Client.Remove(tok, id))
}

func (t *commandTap) CreateSubflow(tok mptcp.Token, local mptcp.Endpoint, remote netip.AddrPort) error {
	return t.record(tok, control.Command{Op: control.OpCreateSubflow, ID: local.ID, Local: netip.AddrPortFrom(local.Addr, 0), Remote: remote},
		t.Client.CreateSubflow(tok, local, remote))
}

func (t *commandTap) DestroySubflow(tok mptcp.Token, local, remote netip.AddrPort) error {
	return t.record(tok, control.Command{Op: control.OpDestroySubflow, Local: local, Remote: remote},
		t.Client.DestroySubflow(tok, local, remote))
}

func (t *commandTap) SetSubflowBackup(tok mptcp.Token, local, remote netip.AddrPort, backup bool) error {
	op := control.OpClearBackup
	if backup {
		op = control.OpSetBackup
	}
	return t.record(tok, control.Command{Op: op, Local: local, Remote: remote},
		t.Client.SetSubflowBackup(tok, local, remote, backup))
}
