package daemon

import (
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
)

// The command history stays bounded: per connection, and by connection
// once CLOSED has been handled or the engine no longer has it.
func TestCommandLogBounded(t *testing.T) {
	l := newCommandLog()
	for i := range maxCommands + 4 {
		l.add(1, control.Command{Op: control.OpRemove, ID: mptcp.ID(i)})
	}
	l.add(2, control.Command{Op: control.OpAnnounce})
	l.add(3, control.Command{Op: control.OpAnnounce})
	got := l.of(1)
	if len(got) != maxCommands || got[0].ID != 4 || got[maxCommands-1].ID != maxCommands+3 {
		t.Errorf("%d commands kept, from id %d; want the latest %d", len(got), got[0].ID, maxCommands)
	}

	l.received([]mptcp.Event{{Type: mptcp.EventClosed, Token: 1}, {Type: mptcp.EventCreated, Token: 4}})
	if len(l.of(1)) == 0 {
		t.Error("forgotten while its CLOSED is being handled: the plugin's last commands would be lost")
	}
	l.received(nil)
	if n := len(l.of(1)); n != 0 || l.size() != 2 {
		t.Errorf("after the next batch: %d commands of the closed connection, %d connections; want 0 and 2", n, l.size())
	}
	l.keepOnly([]userspace.ConnInfo{{Token: 3}})
	if l.size() != 1 || len(l.of(3)) != 1 {
		t.Errorf("keepOnly: %d connections left", l.size())
	}
	if got := l.of(9); got == nil || len(got) != 0 {
		t.Errorf("an unknown connection's commands: %#v, want empty", got)
	}
}
