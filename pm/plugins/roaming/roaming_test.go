package roaming_test

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/plugins/roaming"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

var (
	eth  = userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}}
	wlan = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24", "2001:db8:2::2/64"}}
	wwan = userspacetest.Iface{Index: 4, Name: "wwan0", Kind: policy.KindWWAN, Addrs: []string{"10.64.0.2/30"}}
	// wlan4 is wlan0 with its IPv4 address only, wlan2 with a second one.
	wlan4 = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24"}}
	wlan2 = userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24", "10.0.2.3/24"}}

	all = userspacetest.Network(eth, wlan, wwan)

	client4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:40000"), userspacetest.Addr("192.0.2.1:443")}
	client6 = [2]netip.AddrPort{userspacetest.Addr("[2001:db8:1::2]:40000"), userspacetest.Addr("[2001:db8::1]:443")}
	server4 = [2]netip.AddrPort{userspacetest.Addr("10.0.1.2:443"), userspacetest.Addr("198.51.100.1:50000")}
)

// ifaceOf names the interface of a test address.
func ifaceOf(a netip.Addr) string { return userspacetest.IfaceOf(a, eth, wlan, wlan2, wwan) }

// kernelView is what the kernel holds of connection 1: its subflows per
// interface, their local addresses, the interfaces of the backup ones,
// and the interfaces whose address was removed at the peer (REMOVE).
type kernelView struct {
	Subflows map[string]int
	Locals   []string
	Backup   []string
	Removed  []string
}

func viewOf(h *userspacetest.Harness, local netip.AddrPort) kernelView {
	v := kernelView{Subflows: map[string]int{}}
	for _, s := range h.Kernel.Subflows(1) {
		v.Subflows[ifaceOf(s.Local.Addr())]++
		v.Locals = append(v.Locals, s.Local.Addr().String())
		if s.Backup {
			v.Backup = append(v.Backup, ifaceOf(s.Local.Addr()))
		}
	}
	ids := map[mptcp.ID]netip.Addr{0: local.Addr()} // REMOVE names addresses by id
	for _, op := range h.Kernel.Ops() {
		switch {
		case op.Errno != 0:
		case op.Cmd == mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE:
			ids[op.Endpoint.ID] = op.Endpoint.Addr
		case op.Cmd == mptcp.MPTCP_PM_CMD_REMOVE:
			v.Removed = append(v.Removed, ifaceOf(ids[op.LocalID]))
		}
	}
	return v
}

// changeLink is n with change made to link name.
func changeLink(n pm.Network, name string, change func(l *pm.Link)) pm.Network {
	out := pm.Network{Links: slices.Clone(n.Links), Addrs: n.Addrs}
	for i := range out.Links {
		if out.Links[i].Name == name {
			change(&out.Links[i])
		}
	}
	return out
}

// noCarrier is n with link name down for want of carrier: its addresses
// stay, the link is no longer usable.
func noCarrier(n pm.Network, name string) pm.Network {
	return changeLink(n, name, func(l *pm.Link) { l.Usable, l.Why = false, "no carrier" })
}

// withGateway is n with link name's default routes through gw.
func withGateway(n pm.Network, name, gw string) pm.Network {
	return changeLink(n, name, func(l *pm.Link) { l.Gateways = []netip.Addr{netip.MustParseAddr(gw)} })
}

func TestRoaming(t *testing.T) {
	wlanBackup := userspacetest.PolicyWith(policy.Rule{Names: []string{"wlan*"}, Flags: mptcp.FlagSubflow | mptcp.FlagBackup})
	wwanRegular := userspacetest.PolicyWith(policy.Rule{Kinds: []policy.Kind{policy.KindWWAN}, Flags: mptcp.FlagSubflow})
	tests := []struct {
		name   string
		net    pm.Network
		policy *policy.Policy
		conn   [2]netip.AddrPort
		server bool
		then   func(h *userspacetest.Harness) // after the connection is established
		want   kernelView
		cmds   []string // when set, the commands the kernel got
		errors uint64   // commands the kernel refuses
	}{
		{
			name: "a subflow from every other interface, backup on wwan",
			net:  all, conn: client4,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"},
				Locals: []string{"10.0.1.2", "10.0.2.2", "10.64.0.2"}},
		},
		{
			name: "wwan is backup whatever its rule says, from the start",
			net:  all, conn: client4, policy: wwanRegular,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
			cmds: []string{"create 10.0.2.2", "create 10.64.0.2"},
		},
		{
			name: "other links are backup when their rule says so",
			net:  all, conn: client4, policy: wlanBackup,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wlan0", "wwan0"}},
		},
		{
			name: "IPv6 connection: interfaces with IPv6",
			net:  all, conn: client6,
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1}, Locals: []string{"2001:db8:1::2", "2001:db8:2::2"}},
		},
		{
			name: "the accepting side opens nothing",
			net:  all, conn: server4, server: true,
			want: kernelView{Subflows: map[string]int{"eth0": 1}},
		},
		{
			name: "address added mid-connection",
			net:  userspacetest.Without(all, "wlan0"), conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(all) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
		{
			name: "a refused subflow is tried again when its link changes",
			net:  userspacetest.Network(eth, wwan), conn: client4,
			then: func(h *userspacetest.Harness) {
				h.Kernel.FailNext(mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE, syscall.ENETUNREACH)
				h.SetNetwork(userspacetest.Network(eth, wlan4, wwan))
				h.Settle()
				h.SetNetwork(withGateway(userspacetest.Network(eth, wlan4, wwan), "wlan0", "10.0.2.1"))
			},
			want:   kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
			errors: 1,
		},
		{
			name: "address removed mid-connection: removed at the peer",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(userspacetest.Without(all, "wlan0")) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wwan0": 1}, Backup: []string{"wwan0"}, Removed: []string{"wlan0"}},
		},
		{
			name: "carrier lost",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(noCarrier(all, "wlan0")) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wwan0": 1}, Backup: []string{"wwan0"}, Removed: []string{"wlan0"}},
		},
		{
			name: "carrier lost on the initial subflow's link",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.SetNetwork(noCarrier(all, "eth0")) },
			want: kernelView{Subflows: map[string]int{"wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}, Removed: []string{"eth0"}},
		},
		{
			name: "carrier back",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(noCarrier(all, "wlan0"))
				h.Settle()
				h.SetNetwork(all)
			},
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}, Removed: []string{"wlan0"}},
		},
		{
			name: "address gone and back before its subflow's close is read",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(userspacetest.Without(all, "wlan0"))
				h.SetNetwork(all)
			},
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}, Removed: []string{"wlan0"}},
		},
		{
			name: "another address of the interface takes over",
			net:  userspacetest.Network(eth, wlan2), conn: client4,
			then: func(h *userspacetest.Harness) {
				h.SetNetwork(userspacetest.Network(eth, userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.3/24"}}))
			},
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1}, Locals: []string{"10.0.1.2", "10.0.2.3"}, Removed: []string{"wlan0"}},
		},
		{
			name: "policy makes a link backup: demoted at once beside a regular path",
			net:  all, conn: client4,
			then: func(h *userspacetest.Harness) { h.Engine.SetNetwork(all, wlanBackup) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wlan0", "wwan0"}},
		},
		{
			name: "policy makes a link regular: promoted",
			net:  all, conn: client4, policy: wlanBackup,
			then: func(h *userspacetest.Harness) { h.Engine.SetNetwork(all, userspacetest.Policy()) },
			want: kernelView{Subflows: map[string]int{"eth0": 1, "wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := userspacetest.New(t, userspacetest.Options{Plugin: roaming.Name, Policy: tt.policy})
			h.SetNetwork(tt.net)
			h.Open(1, tt.conn[0], tt.conn[1], tt.server)
			h.Settle()
			if tt.then != nil {
				tt.then(h)
				h.Settle()
			}
			got := viewOf(h, tt.conn[0])
			if tt.want.Locals == nil {
				got.Locals = nil // not what the case is about
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("kernel's view (-want +got):\n%s", diff)
			}
			if tt.cmds != nil {
				if diff := cmp.Diff(tt.cmds, commands(h)); diff != "" {
					t.Errorf("kernel's commands (-want +got):\n%s", diff)
				}
			}
			if n := h.Engine.Stats().CommandErrors; n != tt.errors {
				t.Errorf("the kernel refused %d commands, want %d:\n%v", n, tt.errors, h.Kernel.Ops())
			}
		})
	}
}

// commands lists the kernel's userspace-PM requests on subflows, oldest
// first, by local address.
func commands(h *userspacetest.Harness) []string {
	var out []string
	for _, op := range h.Kernel.Ops() {
		var verb string
		switch op.Cmd {
		case mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE:
			verb = "create"
		case mptcp.MPTCP_PM_CMD_SUBFLOW_DESTROY:
			verb = "destroy"
		case mptcp.MPTCP_PM_CMD_SET_FLAGS:
			verb = "regular"
			if op.Endpoint.Flags&mptcp.FlagBackup != 0 {
				verb = "backup"
			}
		default:
			verb = fmt.Sprintf("cmd %d", op.Cmd)
		}
		out = append(out, verb+" "+op.Endpoint.Addr.String())
	}
	return out
}

// A connection that runs on cellular alone meets a WiFi network: the
// WiFi subflow is created, and only once it is established is the
// cellular one made a backup subflow. A join that fails demotes nothing.
func TestMakeBeforeBreak(t *testing.T) {
	onWWAN := [2]netip.AddrPort{userspacetest.Addr("10.64.0.2:40000"), userspacetest.Addr("192.0.2.1:443")}
	tests := []struct {
		name   string
		finish func(h *userspacetest.Harness)
		want   kernelView
		cmds   []string
	}{
		{
			name:   "join established",
			finish: (*userspacetest.Harness).Release,
			want:   kernelView{Subflows: map[string]int{"wlan0": 1, "wwan0": 1}, Backup: []string{"wwan0"}},
			cmds:   []string{"create 10.0.2.2", "backup 10.64.0.2"},
		},
		{
			name:   "join failed",
			finish: (*userspacetest.Harness).FailJoins,
			want:   kernelView{Subflows: map[string]int{"wwan0": 1}},
			cmds:   []string{"create 10.0.2.2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := userspacetest.New(t, userspacetest.Options{Plugin: roaming.Name, HoldJoins: true})
			h.SetNetwork(userspacetest.Network(wwan))
			h.Open(1, onWWAN[0], onWWAN[1], false)
			h.Settle()
			if cmds := commands(h); len(cmds) != 0 {
				t.Fatalf("alone on cellular, the kernel got %v, want nothing", cmds)
			}

			h.SetNetwork(userspacetest.Network(wlan, wwan))
			h.Settle()
			if got, want := commands(h), []string{"create 10.0.2.2"}; !slices.Equal(got, want) || h.Held() != 1 {
				t.Fatalf("while the WiFi join is under way (%d held), the kernel got %v, want %v", h.Held(), got, want)
			}

			tt.finish(h)
			h.Settle()
			if diff := cmp.Diff(tt.cmds, commands(h)); diff != "" {
				t.Errorf("kernel's commands (-want +got):\n%s", diff)
			}
			got := viewOf(h, onWWAN[0])
			got.Locals = nil
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateEmpty(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("kernel's view (-want +got):\n%s", diff)
			}
		})
	}
}
