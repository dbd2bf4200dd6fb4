package announce_test

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/plugins/announce"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

var (
	eth  = userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}}
	wlan = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24", "2001:db8:2::2/64"}}
	lan  = userspacetest.Iface{Index: 4, Name: "lan1", Kind: policy.KindEthernet, Addrs: []string{"10.0.3.2/24"}}

	all = userspacetest.Network(eth, wlan, lan)

	server4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:443"), userspacetest.Addr("198.51.100.1:50000")}
	server6 = [2]netip.AddrPort{userspacetest.Addr("[2001:db8:1::2]:443"), userspacetest.Addr("[2001:db8::1]:50000")}
	client4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:40000"), userspacetest.Addr("192.0.2.1:443")}
)

// signalPolicy announces wlan0's addresses on the connection's port and
// lan1's on port 8443; eth0 keeps the built-in subflow flag.
func signalPolicy(first ...policy.Rule) *policy.Policy {
	return userspacetest.PolicyWith(append(first,
		policy.Rule{Names: []string{"wlan*"}, Flags: mptcp.FlagSignal},
		policy.Rule{Names: []string{"lan*"}, Flags: mptcp.FlagSignal, Port: 8443},
	)...)
}

// fakeListeners stands for the sockets: it keeps the set of open
// listeners and, like the kernel, reports each MPTCP listener opened or
// closed with a LISTENER_* event.
type fakeListeners struct {
	t *testing.T

	mu   sync.Mutex
	h    *userspacetest.Harness
	open map[netip.AddrPort]bool
	fail map[netip.AddrPort]error
	log  []string
}

var registered atomic.Int64

// start registers the plugin with fresh fake listeners under a name of
// its own (registration is for the whole test binary) and runs it.
func start(t *testing.T, p *policy.Policy, fail map[netip.AddrPort]error) (*userspacetest.Harness, *fakeListeners) {
	t.Helper()
	f := &fakeListeners{t: t, open: map[netip.AddrPort]bool{}, fail: fail}
	name := fmt.Sprintf("%s-test-%d", announce.Name, registered.Add(1))
	pm.Register(name, announce.Factory(f))
	h := userspacetest.New(t, userspacetest.Options{Plugin: name, Policy: p})
	f.mu.Lock()
	f.h = h
	f.mu.Unlock()
	return h, f
}

func (f *fakeListeners) Listen(at netip.AddrPort) (io.Closer, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[at]; err != nil {
		return nil, err
	}
	if f.open[at] {
		f.t.Errorf("listener on %v opened twice", at)
	}
	f.open[at] = true
	f.log = append(f.log, "listen "+at.String())
	f.h.Inject(listenerEvent(mptcp.EventListenerCreated, at))
	return closer{f, at}, nil
}

type closer struct {
	f  *fakeListeners
	at netip.AddrPort
}

func (c closer) Close() error {
	f := c.f
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.open[c.at] {
		f.t.Errorf("listener on %v closed twice", c.at)
	}
	delete(f.open, c.at)
	f.log = append(f.log, "close "+c.at.String())
	f.h.Inject(listenerEvent(mptcp.EventListenerClosed, c.at))
	return nil
}

func (f *fakeListeners) listening() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for at := range f.open {
		out = append(out, at.String())
	}
	slices.Sort(out)
	return out
}

func listenerEvent(typ mptcp.EventType, at netip.AddrPort) mptcp.Event {
	return mptcp.Event{Type: typ, Saddr: at.Addr(), Sport: at.Port()}
}

// announced lists the addresses announced on connection tok, as the
// kernel holds them, sorted.
func announced(h *userspacetest.Harness, tok mptcp.Token) []string {
	var out []string
	for _, e := range h.Kernel.ConnectionEndpoints(tok) {
		if e.Flags&mptcp.FlagSignal == 0 {
			continue
		}
		s := e.Addr.String()
		if e.ID == 0 {
			s += " id 0!"
		}
		if e.Port != 0 {
			s += fmt.Sprintf(" port %d", e.Port)
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func TestAnnounce(t *testing.T) {
	ethSignal := signalPolicy(policy.Rule{Names: []string{"eth*"}, Flags: mptcp.FlagSignal})
	ethPort := signalPolicy(policy.Rule{Names: []string{"eth*"}, Flags: mptcp.FlagSignal, Port: 8443})
	lanSubflow := signalPolicy(policy.Rule{Names: []string{"lan*"}, Flags: mptcp.FlagSubflow})
	lanPort9 := signalPolicy(policy.Rule{Names: []string{"lan*"}, Flags: mptcp.FlagSignal, Port: 9000})
	tests := []struct {
		name      string
		policy    *policy.Policy // nil: signalPolicy()
		conn      [2]netip.AddrPort
		server    bool
		listeners []string                       // LISTENER_CREATED before the connection
		fail      map[netip.AddrPort]error       // Listen's errors
		then      func(h *userspacetest.Harness) // after the connection is established
		announced []string
		listening []string
	}{
		{
			name: "signal addresses, each with a listener",
			conn: server4, server: true,
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "a wildcard listener covers its port",
			conn: server4, server: true, listeners: []string{"0.0.0.0:443"},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.3.2:8443"},
		},
		{
			name: "the IPv6 wildcard covers IPv4 too",
			conn: server4, server: true, listeners: []string{"[::]:443"},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.3.2:8443"},
		},
		{
			name: "a listener on the address itself",
			conn: server4, server: true, listeners: []string{"10.0.2.2:443", "10.0.3.2:8443"},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
		},
		{
			name: "a listener on another address or port does not cover",
			conn: server4, server: true, listeners: []string{"10.0.1.2:443", "10.0.2.2:8443"},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "a closed listener covers no more",
			conn: server4, server: true,
			then: func(h *userspacetest.Harness) {
				// The wildcard came and went before the address did.
				h.SetNetwork(userspacetest.Without(all, "wlan0"))
				h.Inject(listenerEvent(mptcp.EventListenerCreated, userspacetest.Addr("0.0.0.0:443")),
					listenerEvent(mptcp.EventListenerClosed, userspacetest.Addr("0.0.0.0:443")))
				h.Settle()
				h.SetNetwork(all)
			},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "an address in use is taken as covered",
			conn: server4, server: true,
			fail:      map[netip.AddrPort]error{userspacetest.Addr("10.0.2.2:443"): syscall.EADDRINUSE},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.3.2:8443"},
		},
		{
			name: "no listener, no announcement",
			conn: server4, server: true,
			fail:      map[netip.AddrPort]error{userspacetest.Addr("10.0.3.2:8443"): syscall.EADDRNOTAVAIL},
			announced: []string{"10.0.2.2"},
			listening: []string{"10.0.2.2:443"},
		},
		{
			name: "subflow-only addresses are not announced",
			conn: server4, server: true, policy: lanSubflow,
			announced: []string{"10.0.2.2"},
			listening: []string{"10.0.2.2:443"},
		},
		{
			name: "the connection's own address only with another port",
			conn: server4, server: true, policy: ethSignal,
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "the connection's own address with a port",
			conn: server4, server: true, policy: ethPort,
			announced: []string{"10.0.1.2 port 8443", "10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.1.2:8443", "10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "IPv6 connection: IPv6 addresses, which the IPv4 wildcard does not cover",
			conn: server6, server: true, listeners: []string{"0.0.0.0:443"},
			announced: []string{"2001:db8:2::2"},
			listening: []string{"[2001:db8:2::2]:443"},
		},
		{
			name: "the connecting side announces nothing",
			conn: client4,
		},
		{
			name: "address added mid-connection",
			conn: server4, server: true,
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(userspacetest.Without(all, "wlan0"))
				h.Settle()
				h.SetNetwork(all)
			},
			announced: []string{"10.0.2.2", "10.0.3.2 port 8443"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:8443"},
		},
		{
			name: "address removed: withdrawn, its listener closed",
			conn: server4, server: true,
			then:      func(h *userspacetest.Harness) { h.SetNetwork(userspacetest.Without(all, "lan1")) },
			announced: []string{"10.0.2.2"},
			listening: []string{"10.0.2.2:443"},
		},
		{
			name: "signal flag gone: withdrawn",
			conn: server4, server: true,
			then:      func(h *userspacetest.Harness) { h.Engine.SetNetwork(all, lanSubflow) },
			announced: []string{"10.0.2.2"},
			listening: []string{"10.0.2.2:443"},
		},
		{
			name: "port changed: announced again on the new one",
			conn: server4, server: true,
			then:      func(h *userspacetest.Harness) { h.Engine.SetNetwork(all, lanPort9) },
			announced: []string{"10.0.2.2", "10.0.3.2 port 9000"},
			listening: []string{"10.0.2.2:443", "10.0.3.2:9000"},
		},
		{
			name: "connection closed: its listeners closed",
			conn: server4, server: true,
			then: func(h *userspacetest.Harness) { h.Close(1) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.policy
			if p == nil {
				p = signalPolicy()
			}
			h, f := start(t, p, tt.fail)
			h.SetNetwork(all)
			for _, l := range tt.listeners {
				h.Inject(listenerEvent(mptcp.EventListenerCreated, userspacetest.Addr(l)))
			}
			h.Open(1, tt.conn[0], tt.conn[1], tt.server)
			h.Settle()
			if tt.then != nil {
				tt.then(h)
				h.Settle()
			}
			if diff := cmp.Diff(tt.announced, announced(h, 1), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("announced in the kernel (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.listening, f.listening(), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("plugin's listeners (-want +got):\n%s", diff)
			}
		})
	}
}

// A listener the plugin opened serves every connection that announces
// its address, and closes with the last of them, however quickly the
// next connection comes: its own LISTENER_CLOSED, still unread, must not
// pass for a listener that covers the address.
func TestListenerLifetime(t *testing.T) {
	h, f := start(t, signalPolicy(), nil)
	h.SetNetwork(userspacetest.Network(eth, wlan))
	other := [2]netip.AddrPort{server4[0], userspacetest.Addr("198.51.100.2:50000")}
	h.Open(1, server4[0], server4[1], true)
	h.Open(2, other[0], other[1], true)
	h.Settle()
	h.Close(1)
	h.Settle()
	if got, want := f.listening(), []string{"10.0.2.2:443"}; !slices.Equal(got, want) {
		t.Errorf("after the first connection closed, listening on %v, want %v", got, want)
	}

	// Close the last user and open a new connection in one batch: the
	// new one is handled before the LISTENER_CLOSED the closing causes.
	third := [2]netip.AddrPort{server4[0], userspacetest.Addr("198.51.100.3:50000")}
	h.Inject(append([]mptcp.Event{{Type: mptcp.EventClosed, Token: 2}},
		userspacetest.OpenEvents(3, third[0], third[1], true)...)...)
	h.Settle()
	if got, want := announced(h, 3), []string{"10.0.2.2"}; !slices.Equal(got, want) {
		t.Errorf("connection 3 announced %v, want %v", got, want)
	}
	h.Close(3)
	h.Settle()
	f.mu.Lock()
	defer f.mu.Unlock()
	want := []string{"listen 10.0.2.2:443", "close 10.0.2.2:443", "listen 10.0.2.2:443", "close 10.0.2.2:443"}
	if diff := cmp.Diff(want, f.log); diff != "" {
		t.Errorf("listeners opened and closed (-want +got):\n%s", diff)
	}
}
