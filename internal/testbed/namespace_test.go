package testbed

import (
	"net/netip"
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testdata/links.json is `ip -s -j addr show` (iproute2 6.1) in a
// namespace with lo, an up veth and a veth whose peer is down.
func TestParseLinks(t *testing.T) {
	data, err := os.ReadFile("testdata/links.json")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseLinks(data)
	if err != nil {
		t.Fatal(err)
	}
	want := []LinkState{
		{Name: "lo", Index: 1, Up: true, LowerUp: true, Addrs: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/8")}},
		{Name: "wlan0", Index: 2, Up: true, LowerUp: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.1.1.2/24")},
			Counters: Counters{TxBytes: 90, TxPackets: 1}},
		{Name: "wwan0", Index: 3, Up: true, Addrs: []netip.Prefix{netip.MustParsePrefix("10.1.2.2/24"), netip.MustParsePrefix("10.1.9.2/24")}},
	}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("unexpected links (-want +got):\n%s", diff)
	}
}

func TestParseLinksRejects(t *testing.T) {
	for _, in := range []string{
		``,
		`{}`,
		`[{"ifindex":1}]`,
		`[{"ifname":"x","addr_info":[{"family":"inet","local":"10.0.0","prefixlen":8}]}]`,
		`[{"ifname":"x","addr_info":[{"family":"inet","local":"10.0.0.1","prefixlen":33}]}]`,
		`[{"ifname":"x","addr_info":[{"family":"inet","local":"::","prefixlen":0}]}]`,
	} {
		if got, err := parseLinks([]byte(in)); err == nil {
			t.Errorf("parseLinks(%q) = %+v, want an error", in, got)
		}
	}
}

func FuzzParseLinks(f *testing.F) {
	if data, err := os.ReadFile("testdata/links.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`[{"ifname":"a","flags":["UP"],"addr_info":[{"family":"inet","local":"1.2.3.4","prefixlen":0}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		links, err := parseLinks(data)
		if err != nil {
			return
		}
		for _, l := range links {
			if l.Name == "" {
				t.Errorf("link without a name accepted: %+v", l)
			}
			for _, p := range l.Addrs {
				if !p.IsValid() || !p.Addr().Is4() {
					t.Errorf("link %s: address %v is not a valid IPv4 prefix", l.Name, p)
				}
			}
		}
	})
}
