package userspace_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
	"github.com/mptcpd-go/mptcpd/policy"
)

// The steps run in order on one engine: each one's callbacks are what
// changed since the step before.
func TestSetNetwork(t *testing.T) {
	eth := userspacetest.Iface{Index: 2, Name: "eth0", Kind: policy.KindEthernet, Addrs: []string{"10.0.1.2/24", "2001:db8:1::2/64"}}
	wlan := userspacetest.Iface{Index: 3, Name: "wlan0", Kind: policy.KindWiFi, Addrs: []string{"10.0.2.2/24"}}
	wwan := userspacetest.Iface{Index: 4, Name: "wwan0", Kind: policy.KindWWAN, Addrs: []string{"10.64.0.2/30"}}
	eth6 := eth
	eth6.Addrs = []string{"10.0.1.2/24", "2001:db8:1::3/64"}
	noCarrier := func(n pm.Network, index int) pm.Network {
		for i := range n.Links {
			if n.Links[i].Index == index {
				n.Links[i].Usable, n.Links[i].Why = false, "no carrier"
			}
		}
		return n
	}
	// ethBackup makes ethernet addresses backup ones.
	ethBackup := userspacetest.Policy()
	ethBackup.Rules = append([]policy.Rule{{Kinds: []policy.Kind{policy.KindEthernet}, Flags: mptcp.FlagSubflow | mptcp.FlagBackup}}, ethBackup.Rules...)

	steps := []struct {
		name   string
		net    pm.Network
		policy *policy.Policy // nil: the default
		want   []string
	}{
		{
			name: "start",
			net:  userspacetest.Network(eth, wlan),
			want: []string{
				"link added eth0 usable=true",
				"link added wlan0 usable=true",
				`addr added 10.0.1.2 id 1 eth0 flags "subflow"`,
				`addr added 2001:db8:1::2 id 2 eth0 flags "subflow"`,
				`addr added 10.0.2.2 id 3 wlan0 flags "subflow"`,
			},
		},
		{
			name: "unchanged",
			net:  userspacetest.Network(eth, wlan),
		},
		{
			name: "carrier lost",
			net:  noCarrier(userspacetest.Network(eth, wlan), 3),
			want: []string{"addr removed 10.0.2.2 id 3 wlan0", "link changed wlan0 usable=false"},
		},
		{
			name: "carrier back: same id",
			net:  userspacetest.Network(eth, wlan),
			want: []string{"link changed wlan0 usable=true", `addr added 10.0.2.2 id 3 wlan0 flags "subflow"`},
		},
		{
			name: "cellular is backup",
			net:  userspacetest.Network(eth, wlan, wwan),
			want: []string{"link added wwan0 usable=true", `addr added 10.64.0.2 id 4 wwan0 flags "subflow backup"`},
		},
		{
			name: "address replaced: freed id not reused at once",
			net:  userspacetest.Network(eth6, wlan, wwan),
			want: []string{"addr removed 2001:db8:1::2 id 2 eth0", `addr added 2001:db8:1::3 id 5 eth0 flags "subflow"`},
		},
		{
			name:   "policy changes flags",
			net:    userspacetest.Network(eth6, wlan, wwan),
			policy: ethBackup,
			want: []string{
				`addr changed 10.0.1.2 id 1 eth0 flags "subflow backup"`,
				`addr changed 2001:db8:1::3 id 5 eth0 flags "subflow backup"`,
			},
		},
		{
			name:   "link gone",
			net:    userspacetest.Network(eth6, wwan),
			policy: ethBackup,
			want:   []string{"addr removed 10.0.2.2 id 3 wlan0", "link removed wlan0"},
		},
	}
	h, r := start(t, userspacetest.Options{})
	for _, st := range steps {
		p := st.policy
		if p == nil {
			p = h.Policy
		}
		h.Engine.SetNetwork(st.net, p)
		if diff := cmp.Diff(st.want, r.takeTrace()); diff != "" {
			t.Errorf("%s: callbacks (-want +got):\n%s", st.name, diff)
		}
	}
}
