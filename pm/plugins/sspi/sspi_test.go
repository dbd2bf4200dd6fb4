package sspi_test

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/plugins/sspi"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

var (
	eth  = userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}}
	wlan = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24", "2001:db8:2::2/64"}}
	wwan = userspacetest.Iface{Index: 4, Name: "wwan0", Kind: policy.KindWWAN, Addrs: []string{"10.64.0.2/30"}} // backup by default

	// wlan2 has a second IPv4 address.
	wlan2 = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24", "10.0.2.3/24"}}

	all = userspacetest.Network(eth, wlan, wwan)

	client4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:40000"), userspacetest.Addr("192.0.2.1:443")}
	client6 = [2]netip.AddrPort{userspacetest.Addr("[2001:db8:1::2]:40000"), userspacetest.Addr("[2001:db8::1]:443")}
	server4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:443"), userspacetest.Addr("198.51.100.1:50000")}
)

// ifaceOf names the interface of a test address.
func ifaceOf(a netip.Addr) string {
	for _, i := range []userspacetest.Iface{eth, wlan, wlan2, wwan} {
		for _, p := range i.Addrs {
			if netip.MustParsePrefix(p).Addr() == a.Unmap() {
				return i.Name
			}
		}
	}
	return "unknown"
}

// kernelView is what the kernel has for connection 1: the subflows per
// interface and their local addresses, the interfaces of backup subflows,
// the announced addresses.
type kernelView struct {
	Subflows  map[string]int
	Locals    []string
	Backup    []string
	Announced []string
}

func viewOf(h *userspacetest.Harness) kernelView {
	v := kernelView{Subflows: map[string]int{}}
	for _, s := range h.Kernel.Subflows(1) {
		v.Subflows[ifaceOf(s.Local.Addr())]++
		v.Locals = append(v.Locals, s.Local.Addr().String())
		if s.Backup {
			v.Backup = append(v.Backup, ifaceOf(s.Local.Addr()))
		}
	}
	for _, e := range h.Kernel.ConnectionEndpoints(1) {
		if e.Flags&mptcp.FlagSignal != 0 {
			if e.ID == 0 {
				v.Announced = append(v.Announced, "id 0!")
			}
			v.Announced = append(v.Announced, e.Addr.String())
		}
	}
	return v
}

func TestSSPI(t *testing.T) {
	ignoreWLAN := userspacetest.Policy()
	ignoreWLAN.Rules = slices.Insert(ignoreWLAN.Rules, 0, policy.Rule{Names: []string{"wlan*"}, Ignore: true})
	wlanBackup := userspacetest.Policy()
	wlanBackup.Rules = slices.Insert(wlanBackup.Rules, 0, policy.Rule{Names: []string{"wlan*"}, Flags: mptcp.FlagSubflow | mptcp.FlagBackup})

	tests := []struct {
		name   string
		net    pm.Network
		policy *policy.Policy
		conn   [2]netip.AddrPort
		server bool
		then   func(h *userspacetest.Harness) // after the connection is established
		want   kernelView
	}{
		{
			name: "connecting side: one subflow from each other interface",
			net:  all, conn: client4,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"},
				Locals: []string{"10.0.1.2", "10.0.2.2", "10.64.0.2"}},
		},
		{
			name: "IPv6 connection: interfaces with IPv6 only",
			net:  all, conn: client6,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1}, Locals: []string{"2001:db8:1::2", "2001:db8:2::2"}},
		},
		{
			name: "policy: ignored interface unused",
			net:  all, conn: client4, policy: ignoreWLAN,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
		{
			name: "second subflow on an interface closed",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) {
				h.Inject(mptcp.Event{Type: mptcp.EventSubEstablished, Token: 1,
					Saddr: netip.MustParseAddr("10.0.2.2"), Sport: 45000, Daddr: client4[1].Addr(), Dport: client4[1].Port()})
			},
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
		{
			name: "address added mid-connection",
			net:  userspacetest.Without(all, "wlan0"), conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(all) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
		{
			name: "address removed mid-connection",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(userspacetest.Without(all, "wlan0")) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
		{
			name: "another address of the interface takes over",
			net:  userspacetest.Network(eth, wlan2), conn: client4,
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(userspacetest.Network(eth, userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.3/24"}}))
			},
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1}, Locals: []string{"10.0.1.2", "10.0.2.3"}},
		},
		{
			name: "policy makes an interface backup",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.Engine.SetNetwork(all, wlanBackup) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wlan0", "wwan0"}},
		},
		{
			name: "accepting side: one address per other interface",
			net:  all, conn: server4, server: true,
			want: kernelView{Subflows: map[string]int{"eth0": 1}, Announced: []string{"10.0.2.2", "10.64.0.2"}},
		},
		{
			name: "accepting side: address removed",
			net:  all, conn: server4, server: true,
			then: func(h *userspacetest.Harness) { h.SetNetwork(userspacetest.Without(all, "wwan0")) },
			want: kernelView{Subflows: map[string]int{"eth0": 1}, Announced: []string{"10.0.2.2"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := userspacetest.New(t, userspacetest.Options{Plugin: sspi.Name, Policy: tt.policy})
			h.SetNetwork(tt.net)
			h.Open(1, tt.conn[0], tt.conn[1], tt.server)
			h.Settle()
			if tt.then != nil {
				tt.then(h)
				h.Settle()
			}
			got := viewOf(h)
			if tt.want.Locals == nil {
				got.Locals = nil // not what the case is about
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("kernel's view (-want +got):\n%s", diff)
			}
		})
	}
}

// Nothing happens before the connection is established: the kernel would
// refuse.
func TestSSPIWaitsForEstablished(t *testing.T) {
	h := userspacetest.New(t, userspacetest.Options{Plugin: sspi.Name})
	h.SetNetwork(all)
	h.Inject(userspacetest.OpenEvents(1, client4[0], client4[1], false)[0]) // CREATED only
	h.Settle()
	if ops := h.Kernel.Ops(); len(ops) != 0 {
		t.Errorf("kernel got %v before ESTABLISHED, want nothing", ops)
	}
}
