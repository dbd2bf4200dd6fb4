package pm

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

func subflowAt(local string, st mptcpdiag.State) mptcpdiag.Subflow {
	return mptcpdiag.Subflow{Local: netip.MustParseAddrPort(local), Remote: netip.MustParseAddrPort("203.0.113.1:443"), State: st}
}

func TestStranded(t *testing.T) {
	n := testNetwork() // wwan0 (10.64.0.2) has no carrier
	const (
		fin1    = mptcpdiag.StateFinWait1
		fin2    = mptcpdiag.StateFinWait2
		est     = mptcpdiag.StateEstablished
		closing = mptcpdiag.StateClosing
		lastAck = mptcpdiag.StateLastAck
	)
	conns := []mptcpdiag.Connection{{
		Local: netip.MustParseAddrPort("192.0.2.10:1000"), State: est,
		Subflows: []mptcpdiag.Subflow{
			subflowAt("192.0.2.10:1000", est),     // usable link: kept
			subflowAt("192.0.2.10:1001", fin1),    // closing, but the path works: kept
			subflowAt("10.64.0.2:1002", fin1),     // no carrier: stranded
			subflowAt("10.64.0.2:1003", est),      // not closed: the path manager's business
			subflowAt("10.64.0.2:1004", fin2),     // sends nothing: kept
			subflowAt("198.18.0.7:1005", closing), // address gone: stranded
			subflowAt("[::ffff:198.18.0.7]:1006", lastAck),
		},
	}, {
		// Fallen back to TCP: its subflow has the only copy of its data.
		Local: netip.MustParseAddrPort("10.64.0.2:2000"), State: fin1,
		Info:     mptcpdiag.Info{Flags: mptcpdiag.InfoFallback},
		Subflows: []mptcpdiag.Subflow{subflowAt("10.64.0.2:2000", fin1)},
	}, {
		Local: netip.MustParseAddrPort("0.0.0.0:22"), State: mptcpdiag.StateListen,
	}}
	var got []uint16
	for _, s := range Stranded(conns, n) {
		got = append(got, s.Local.Port())
	}
	if want := []uint16{1002, 1005, 1006}; !slices.Equal(got, want) {
		t.Errorf("stranded subflows from ports %v, want %v", got, want)
	}
	for _, st := range []mptcpdiag.State{fin1, closing, lastAck} {
		if !ClosingStates().Has(st) {
			t.Errorf("ClosingStates leaves out %v", st)
		}
	}
}

func TestLostPaths(t *testing.T) {
	n := testNetwork()
	if LostPaths(n, n) {
		t.Error("an unchanged network lost paths")
	}
	noWiFi := testNetwork()
	noWiFi.Links[2].Usable, noWiFi.Links[2].Why = false, "no carrier"
	renumbered := testNetwork()
	renumbered.Addrs[9] = addr(3, "198.51.100.21/24", 0)
	noWWAN := testNetwork()
	noWWAN.Links = slices.Delete(noWWAN.Links, 3, 4)
	noWWAN.Addrs = slices.Delete(noWWAN.Addrs, 11, 12)
	wwanBack := testNetwork()
	wwanBack.Links[3].Usable, wwanBack.Links[3].Why = true, ""
	for _, tt := range []struct {
		name          string
		before, after Network
		want          bool
	}{
		{"carrier lost", n, noWiFi, true},
		{"carrier back", noWiFi, n, false},
		{"renumbered", n, renumbered, true},
		{"a link gains its carrier", n, wwanBack, false},
		{"a link that was never usable goes", n, noWWAN, false},
		{"everything goes", n, Network{}, true},
	} {
		if got := LostPaths(tt.before, tt.after); got != tt.want {
			t.Errorf("%s: LostPaths %v, want %v", tt.name, got, tt.want)
		}
	}
}
