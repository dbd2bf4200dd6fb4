// Package userspacetest runs a userspace path-manager engine against the
// fake kernel of nl/mptcptest, for the tests of the engine and of its
// plugins: inject events, wait until the engine has handled them and
// everything they caused, then look at the kernel's side.
package userspacetest

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Options configure a Harness.
type Options struct {
	Plugin string
	Policy *policy.Policy   // nil: Policy()
	Lister userspace.Lister // nil: none
	Log    *slog.Logger     // nil: discard
	// ReadBuffer is the event socket's SO_RCVBUF; 0 keeps the default
	// (256 events).
	ReadBuffer int
	// HoldJoins keeps every SUB_ESTABLISHED event from the engine until
	// Release (or FailJoins): joins stay under way, as on a real network.
	HoldJoins bool
}

// Harness is an engine running on a fake kernel in userspace PM mode.
type Harness struct {
	Kernel *mptcptest.Kernel
	Engine *userspace.Engine
	Client *Recorder
	Policy *policy.Policy

	tb       testing.TB
	injected atomic.Uint64
	gate     *gate // with HoldJoins
}

// New starts an engine with opt's plugin on a fresh fake kernel; it stops
// when tb's test ends.
func New(tb testing.TB, opt Options) *Harness {
	tb.Helper()
	k := mptcptest.NewKernel()
	if err := k.SetPathManager("userspace"); err != nil {
		tb.Fatal(err)
	}
	c, err := k.Dial()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	l, err := k.ListenEvents()
	if err != nil {
		tb.Fatal(err)
	}
	if opt.ReadBuffer != 0 {
		if err := l.SetReadBuffer(opt.ReadBuffer); err != nil {
			tb.Fatal(err)
		}
	}
	if opt.Policy == nil {
		opt.Policy = Policy()
	}
	h := &Harness{Kernel: k, Client: &Recorder{Client: c}, Policy: opt.Policy, tb: tb}
	var events userspace.Events = l
	if opt.HoldJoins {
		h.gate = newGate(l)
		tb.Cleanup(func() { h.gate.Close() })
		events = h.gate
	}
	h.Engine, err = userspace.New(userspace.Config{
		Client: h.Client,
		Events: events,
		Lister: opt.Lister,
		Plugin: opt.Plugin,
		Policy: opt.Policy,
		Log:    opt.Log,
	})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Engine.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("engine: %v", err)
		}
	})
	return h
}

// Policy is the built-in policy with loopback and link-local addresses
// skipped.
func Policy() *policy.Policy {
	return policy.Default(policy.Settings{SkipLoopback: true, SkipLinkLocal: true}, 0)
}

// PolicyWith is Policy with rules tried first.
func PolicyWith(rules ...policy.Rule) *policy.Policy {
	p := Policy()
	p.Rules = append(slices.Clone(rules), p.Rules...)
	return p
}

// SetNetwork hands n to the engine with the harness's policy.
func (h *Harness) SetNetwork(n pm.Network) { h.Engine.SetNetwork(n, h.Policy) }

// Inject sends events as the kernel would, counting them for Settle.
func (h *Harness) Inject(evs ...mptcp.Event) {
	h.injected.Add(uint64(len(evs)))
	h.Kernel.Inject(evs...)
}

// Open injects CREATED and ESTABLISHED for a connection local->remote.
func (h *Harness) Open(tok mptcp.Token, local, remote netip.AddrPort, serverSide bool) {
	h.Inject(OpenEvents(tok, local, remote, serverSide)...)
}

// OpenEvents are CREATED and ESTABLISHED for a connection local->remote.
func OpenEvents(tok mptcp.Token, local, remote netip.AddrPort, serverSide bool) []mptcp.Event {
	ev := mptcp.Event{
		Token: tok, Saddr: local.Addr(), Sport: local.Port(), Daddr: remote.Addr(), Dport: remote.Port(),
		ServerSide: serverSide,
	}
	created, established := ev, ev
	created.Type, established.Type = mptcp.EventCreated, mptcp.EventEstablished
	return []mptcp.Event{created, established}
}

// Close injects CLOSED.
func (h *Harness) Close(tok mptcp.Token) { h.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: tok}) }

// Settle waits until the engine has handled every event injected and
// every event its own commands made the fake kernel send, but those
// HoldJoins keeps back.
func (h *Harness) Settle() {
	h.tb.Helper()
	WaitFor(h.tb, "the engine to handle every event", func() bool {
		got := h.Engine.Stats().Events // before the recorder's counts: see Recorder
		var withheld uint64
		if h.gate != nil {
			withheld = h.gate.withheld.Load()
		}
		return got+withheld == h.injected.Load()+h.Client.Events()
	})
}

// WaitFor polls cond until it holds, failing tb after 10 seconds.
func WaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for pause := time.Microsecond; !cond(); pause = min(2*pause, time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(pause)
	}
}

// Recorder passes commands to the fake kernel and counts the successful
// ones that make it send an event (SUB_ESTABLISHED, SUB_CLOSED). A count
// goes up once the command has returned, when its event is already
// queued, so that Settle never sees the event before the count.
type Recorder struct {
	userspace.Client

	// OnCreate, when set, is called once a SUBFLOW_CREATE has been
	// answered, with the time it was sent, from the engine's goroutine.
	// Set it before injecting the events that make the engine create
	// subflows.
	OnCreate func(tok mptcp.Token, sent time.Time, err error)

	creates, destroys atomic.Uint64
}

// CreateSubflow sends SUBFLOW_CREATE.
func (r *Recorder) CreateSubflow(tok mptcp.Token, local mptcp.Endpoint, remote netip.AddrPort) error {
	sent := time.Now()
	err := r.Client.CreateSubflow(tok, local, remote)
	if err == nil {
		r.creates.Add(1)
	}
	if r.OnCreate != nil {
		r.OnCreate(tok, sent, err)
	}
	return err
}

// DestroySubflow sends SUBFLOW_DESTROY.
func (r *Recorder) DestroySubflow(tok mptcp.Token, local, remote netip.AddrPort) error {
	err := r.Client.DestroySubflow(tok, local, remote)
	if err == nil {
		r.destroys.Add(1)
	}
	return err
}

// Creates is the number of subflows created.
func (r *Recorder) Creates() uint64 { return r.creates.Load() }

// Events is the number of events the successful commands caused.
func (r *Recorder) Events() uint64 { return r.creates.Load() + r.destroys.Load() }

// Iface is one usable link for Network: addresses as prefixes
// ("192.0.2.1/24").
type Iface struct {
	Index int
	Name  string
	Kind  policy.Kind
	Addrs []string
}

// Network builds a network of usable links with default routes of both
// families.
func Network(ifs ...Iface) pm.Network {
	var n pm.Network
	for _, i := range ifs {
		n.Links = append(n.Links, pm.Link{
			Index: i.Index, Name: i.Name, Kind: i.Kind, Usable: true, DefaultRoute4: true, DefaultRoute6: true,
		})
		for _, a := range i.Addrs {
			n.Addrs = append(n.Addrs, pm.Address{LinkIndex: i.Index, Prefix: netip.MustParsePrefix(a)})
		}
	}
	return n
}

// Without is n without link name and its addresses.
func Without(n pm.Network, name string) pm.Network {
	var out pm.Network
	var index int
	for _, l := range n.Links {
		if l.Name == name {
			index = l.Index
			continue
		}
		out.Links = append(out.Links, l)
	}
	for _, a := range n.Addrs {
		if a.LinkIndex != index {
			out.Addrs = append(out.Addrs, a)
		}
	}
	return out
}

// IfaceOf names the interface among ifs that holds address a, "unknown"
// when none does.
func IfaceOf(a netip.Addr, ifs ...Iface) string {
	for _, i := range ifs {
		for _, p := range i.Addrs {
			if netip.MustParsePrefix(p).Addr() == a.Unmap() {
				return i.Name
			}
		}
	}
	return "unknown"
}

// Addr parses "address:port".
func Addr(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
