package fullmesh_test

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/plugins/fullmesh"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

var (
	eth  = userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "10.0.1.3/24", "2001:db8:1::2/64"}}
	wlan = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24"}}

	client = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:40000"), userspacetest.Addr("192.0.2.1:443")}
	server = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:443"), userspacetest.Addr("198.51.100.1:50000")}
)

func announced(id mptcp.ID, addr string) mptcp.Event {
	a := userspacetest.Addr(addr)
	return mptcp.Event{Type: mptcp.EventAnnounced, Token: 1, RemoteID: id, Daddr: a.Addr(), Dport: a.Port()}
}

// pairs lists connection 1's subflows in the kernel as "local->remote",
// without the local port, and its announced addresses.
func pairs(h *userspacetest.Harness) (subflows, ann []string) {
	for _, s := range h.Kernel.Subflows(1) {
		subflows = append(subflows, s.Local.Addr().String()+"->"+s.Remote.String())
	}
	for _, e := range h.Kernel.ConnectionEndpoints(1) {
		if e.Flags&mptcp.FlagSignal != 0 && e.ID != 0 {
			ann = append(ann, e.Addr.String())
		}
	}
	return subflows, ann
}

func limit(n uint32) *policy.Policy {
	p := userspacetest.Policy()
	p.Settings.Subflows = policy.Limit{Mode: policy.LimitFixed, Value: n}
	return p
}

func TestFullmesh(t *testing.T) {
	tests := []struct {
		name      string
		net       pm.Network
		policy    *policy.Policy
		conn      [2]netip.AddrPort
		server    bool
		events    []mptcp.Event                  // after the connection is established
		then      func(h *userspacetest.Harness) // after the events
		want      []string
		announced []string
	}{
		{
			name: "every local address to the peer",
			net:  userspacetest.Network(eth, wlan), conn: client,
			want: []string{"10.0.1.2->192.0.2.1:443", "10.0.1.3->192.0.2.1:443", "10.0.2.2->192.0.2.1:443"},
		},
		{
			name: "announced addresses join the mesh; IPv6 stays out of an IPv4 connection",
			net:  userspacetest.Network(eth, wlan), conn: client,
			events: []mptcp.Event{announced(5, "192.0.2.7:0"), announced(6, "[2001:db8::7]:443")},
			want: []string{
				"10.0.1.2->192.0.2.1:443", "10.0.1.3->192.0.2.1:443", "10.0.2.2->192.0.2.1:443",
				"10.0.1.2->192.0.2.7:443", "10.0.1.3->192.0.2.7:443", "10.0.2.2->192.0.2.7:443",
			},
		},
		{
			name: "the policy's subflows limit",
			net:  userspacetest.Network(eth, wlan), conn: client, policy: limit(2),
			events: []mptcp.Event{announced(5, "192.0.2.7:0")},
			want:   []string{"10.0.1.2->192.0.2.1:443", "10.0.1.3->192.0.2.1:443", "10.0.2.2->192.0.2.1:443"},
		},
		{
			name: "limit 0",
			net:  userspacetest.Network(eth, wlan), conn: client, policy: limit(0),
			want: []string{"10.0.1.2->192.0.2.1:443"},
		},
		{
			name: "an address that goes makes room",
			net:  userspacetest.Network(eth, wlan), conn: client, policy: limit(2),
			events: []mptcp.Event{announced(5, "192.0.2.7:0")}, // no room left for it
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(userspacetest.Network(eth))
			},
			want: []string{"10.0.1.2->192.0.2.1:443", "10.0.1.3->192.0.2.1:443", "10.0.1.2->192.0.2.7:443"},
		},
		{
			name: "accepting side announces every address but the initial one",
			net:  userspacetest.Network(eth, wlan), conn: server, server: true,
			want:      []string{"10.0.1.2->198.51.100.1:50000"},
			announced: []string{"10.0.1.3", "10.0.2.2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := userspacetest.New(t, userspacetest.Options{Plugin: fullmesh.Name, Policy: tt.policy})
			h.SetNetwork(tt.net)
			h.Open(1, tt.conn[0], tt.conn[1], tt.server)
			h.Inject(tt.events...)
			h.Settle()
			if tt.then != nil {
				tt.then(h)
				h.Settle()
			}
			subflows, ann := pairs(h)
			if diff := cmp.Diff(tt.want, subflows, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("kernel's subflows (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.announced, ann, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("announced (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMaxSubflows(t *testing.T) {
	tests := []struct {
		limit policy.Limit
		want  int
	}{
		{policy.Limit{Mode: policy.LimitFixed, Value: 3}, 3},
		{policy.Limit{Mode: policy.LimitFixed}, 0},
		{policy.Limit{Mode: policy.LimitAuto}, 8},
		{policy.Limit{Mode: policy.LimitKeep}, 8},
	}
	for _, tt := range tests {
		p := userspacetest.Policy()
		p.Settings.Subflows = tt.limit
		if got := fullmesh.MaxSubflows(p); got != tt.want {
			t.Errorf("MaxSubflows(subflows %v) = %d, want %d", tt.limit, got, tt.want)
		}
	}
}
