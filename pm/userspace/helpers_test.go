package userspace_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

// recorder is a plugin that writes every callback into a trace and runs
// the commands a test scripts. Tests set the hooks before they inject the
// events that call them.
type recorder struct {
	env   pm.Env
	trace []string

	onEstablished func(env pm.Env, c pm.Connection)
	onSubflowUp   func(env pm.Env, c pm.Connection, s pm.Subflow)
}

var recorders atomic.Int64

// newRecorder registers a recorder under a fresh name (registration is
// for the whole test binary) and returns the name and the plugin, which
// is ready once an engine made it.
func newRecorder() (string, *recorder) {
	name := fmt.Sprintf("recorder-%d", recorders.Add(1))
	r := &recorder{}
	pm.Register(name, func(env pm.Env) (pm.Plugin, error) {
		r.env = env
		return r, nil
	})
	return name, r
}

// start runs an engine with a fresh recorder.
func start(t *testing.T, opt userspacetest.Options) (*userspacetest.Harness, *recorder) {
	t.Helper()
	var r *recorder
	opt.Plugin, r = newRecorder()
	return userspacetest.New(t, opt), r
}

func (r *recorder) add(format string, args ...any) {
	r.trace = append(r.trace, fmt.Sprintf(format, args...))
}

func sub(s pm.Subflow) string {
	str := fmt.Sprintf("%v->%v id %d/%d if %d", s.Local, s.Remote, s.LocalID, s.RemoteID, s.IfIndex)
	if s.Backup {
		str += " backup"
	}
	if s.Pending {
		str += " pending"
	}
	return str
}

func side(c pm.Connection) string {
	if c.ServerSide() {
		return "server"
	}
	return "client"
}

func (r *recorder) NewConnection(c pm.Connection) {
	r.add("new %v %v %v->%v", c.Token(), side(c), c.Local(), c.Remote())
}

func (r *recorder) ConnectionEstablished(c pm.Connection) {
	r.add("established %v", c.Token())
	if r.onEstablished != nil {
		r.onEstablished(r.env, c)
	}
}

func (r *recorder) ConnectionClosed(c pm.Connection) { r.add("closed %v", c.Token()) }
func (r *recorder) AddressAnnounced(c pm.Connection, a pm.PeerAddr) {
	r.add("announced %v id %d %v", c.Token(), a.ID, a.Addr)
}
func (r *recorder) AddressRemoved(c pm.Connection, a pm.PeerAddr) {
	r.add("removed %v id %d %v", c.Token(), a.ID, a.Addr)
}
func (r *recorder) SubflowEstablished(c pm.Connection, s pm.Subflow) {
	r.add("sub up %v %s", c.Token(), sub(s))
	if r.onSubflowUp != nil {
		r.onSubflowUp(r.env, c, s)
	}
}
func (r *recorder) SubflowClosed(c pm.Connection, s pm.Subflow) {
	r.add("sub down %v %s", c.Token(), sub(s))
}
func (r *recorder) SubflowPriority(c pm.Connection, s pm.Subflow) {
	r.add("sub prio %v %s", c.Token(), sub(s))
}
func (r *recorder) ListenerCreated(a netip.AddrPort) { r.add("listener up %v", a) }
func (r *recorder) ListenerClosed(a netip.AddrPort)  { r.add("listener down %v", a) }
func (r *recorder) LinkAdded(l pm.Link)              { r.add("link added %s usable=%v", l.Name, l.Usable) }
func (r *recorder) LinkChanged(l pm.Link)            { r.add("link changed %s usable=%v", l.Name, l.Usable) }
func (r *recorder) LinkRemoved(l pm.Link)            { r.add("link removed %s", l.Name) }
func (r *recorder) LocalAddressAdded(a pm.LocalAddr) {
	r.add("addr added %v id %d %s flags %q", a.Addr, a.ID, a.Link, a.Flags)
}
func (r *recorder) LocalAddressChanged(a pm.LocalAddr) {
	r.add("addr changed %v id %d %s flags %q", a.Addr, a.ID, a.Link, a.Flags)
}
func (r *recorder) LocalAddressRemoved(a pm.LocalAddr) {
	r.add("addr removed %v id %d %s", a.Addr, a.ID, a.Link)
}

// takeTrace returns the trace so far and starts a new one. Call it after
// Settle (or SetNetwork), which orders it after the callbacks.
func (r *recorder) takeTrace() []string {
	t := r.trace
	r.trace = nil
	return t
}

// twoLinks is a client with ethernet on eth0 and wifi on wlan0.
func twoLinks() pm.Network {
	return userspacetest.Network(
		userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}},
		userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24"}},
	)
}

// lister is a fake of the kernel's connection list.
type lister struct {
	mu    sync.Mutex
	conns []mptcpdiag.Connection
	err   error
	calls int
}

func (l *lister) Connections() ([]mptcpdiag.Connection, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	return l.conns, l.err
}

func (l *lister) set(conns []mptcpdiag.Connection, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns, l.err = conns, err
}

// logRecords captures log records at every level.
type logRecords struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *logRecords) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecords) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logRecords) WithGroup(string) slog.Handler            { return h }
func (h *logRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}

// find returns the first record with this message.
func (h *logRecords) find(msg string) (slog.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if r.Message == msg {
			return r, true
		}
	}
	return slog.Record{}, false
}

func attr(r slog.Record, key string) string {
	var v string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value.String()
			return false
		}
		return true
	})
	return v
}
