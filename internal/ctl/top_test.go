package ctl

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/golden"
	"github.com/mptcpd-go/mptcpd/internal/trace"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// topRound is a round at second sec of a laptop with wlan0, wwan0 (no
// carrier) and a down link, an upload of 10 Mbit/s over wlan0 with a
// backup subflow on wwan0, an IPv6 connection on a 4-in-6 socket, and a
// listener, whose counters grew as much as sec says.
func topRound(sec int) trace.Round {
	at := time.Date(2026, 3, 1, 12, 4, sec, 0, time.UTC)
	n := uint64(sec)
	ap := netip.MustParseAddrPort
	mapped := func(s string) netip.AddrPort {
		a := ap(s)
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port())
	}
	up := trace.Record{Time: at, Kind: trace.KindConn, Token: 0x8d1c3f02,
		Local: ap("10.1.1.2:40112"), Remote: ap("10.3.0.1:5201"), TxBytes: n * 1_250_000, RxBytes: n * 2_000}
	wlanSF := trace.Record{Time: at, Kind: trace.KindSubflow, IfIndex: 2, Dev: "wlan0", Token: 0x8d1c3f02,
		Local: ap("10.1.1.2:40112"), Remote: ap("10.3.0.1:5201"), TxBytes: n * 1_248_000, RxBytes: n * 2_000}
	wwanSF := trace.Record{Time: at, Kind: trace.KindSubflow, IfIndex: 3, Dev: "wwan0", Token: 0x8d1c3f02,
		Local: ap("10.1.2.2:39113"), Remote: ap("10.3.0.1:5201"), TxBytes: n * 2_000}
	v6 := trace.Record{Time: at, Kind: trace.KindConn, Token: 0x0000beef,
		Local: ap("[2001:db8:1::2]:50000"), Remote: ap("[2001:db8:3::1]:22"), TxBytes: n * 12_500, RxBytes: n * 125_000}
	return trace.Round{
		Time: at,
		Records: []trace.Record{
			{Time: at, Kind: trace.KindLink, IfIndex: 1, Dev: "lo", RxBytes: n * 100, TxBytes: n * 100},
			{Time: at, Kind: trace.KindLink, IfIndex: 2, Dev: "wlan0", RxBytes: n * 140_000, TxBytes: n * 1_300_000},
			{Time: at, Kind: trace.KindLink, IfIndex: 3, Dev: "wwan0", RxBytes: 5000, TxBytes: 9000},
			{Time: at, Kind: trace.KindLink, IfIndex: 4, Dev: "veth-with-long", RxBytes: 0, TxBytes: 0},
			up, wlanSF, wwanSF, v6,
		},
		Links: []netmon.Link{
			{Index: 1, Name: "lo", Up: true, Carrier: true, Loopback: true},
			{Index: 2, Name: "wlan0", Up: true, Carrier: true},
			{Index: 3, Name: "wwan0", Up: true},
			{Index: 4, Name: "veth-with-long"},
		},
		Addrs: []netmon.Addr{
			{LinkIndex: 1, Prefix: netip.MustParsePrefix("127.0.0.1/8"), Scope: netmon.ScopeHost},
			{LinkIndex: 1, Prefix: netip.MustParsePrefix("::1/128"), Scope: netmon.ScopeHost},
			{LinkIndex: 2, Prefix: netip.MustParsePrefix("10.1.1.2/24")},
			{LinkIndex: 2, Prefix: netip.MustParsePrefix("2001:db8:1::2/64")},
			{LinkIndex: 2, Prefix: netip.MustParsePrefix("fe80::1/64"), Scope: netmon.ScopeLink},
			{LinkIndex: 3, Prefix: netip.MustParsePrefix("10.1.2.2/24")},
		},
		Conns: []mptcpdiag.Connection{
			{Local: up.Local, Remote: up.Remote, State: mptcpdiag.StateEstablished,
				Info: mptcpdiag.Info{Token: up.Token, Subflows: 1},
				Subflows: []mptcpdiag.Subflow{
					{Local: wlanSF.Local, Remote: wlanSF.Remote, TCP: mptcpdiag.TCPInfo{RTT: 12345 * time.Microsecond}},
					{Local: wwanSF.Local, Remote: wwanSF.Remote, Flags: mptcpdiag.SubflowBackupLocal | mptcpdiag.SubflowJoinLocal,
						TCP: mptcpdiag.TCPInfo{RTT: 820 * time.Microsecond}},
				}},
			// Without CAP_NET_ADMIN: no subflows listed.
			{Local: mapped("[::ffff:10.1.1.2]:41000"), Remote: mapped("[::ffff:10.3.0.1]:80"), State: mptcpdiag.StateEstablished,
				Info: mptcpdiag.Info{Token: 0x01020304}},
			{Local: v6.Local, Remote: v6.Remote, State: mptcpdiag.StateEstablished, Info: mptcpdiag.Info{Token: v6.Token}},
			{Local: ap("0.0.0.0:5201"), State: mptcpdiag.StateListen},
		},
	}
}

// topEventsOf are link events, more than a view keeps, one of a link whose
// name has an escape sequence.
func topEventsOf() [][]trace.Record {
	at := func(ms int) time.Time { return time.Date(2026, 3, 1, 12, 3, 59, ms*1e6, time.UTC) }
	return [][]trace.Record{
		{{Time: at(1), Kind: trace.KindEvent, IfIndex: 3, Dev: "wwan0", Event: trace.EventUp}},
		{{Time: at(2), Kind: trace.KindEvent, IfIndex: 3, Dev: "wwan0", Event: trace.EventCarrier}},
		{{Time: at(120), Kind: trace.KindEvent, IfIndex: 3, Dev: "wwan0", Event: trace.EventNoCarrier},
			{Time: at(121), Kind: trace.KindEvent, IfIndex: 2, Dev: "wlan0", Event: trace.EventAddrAdded, Detail: "2001:db8:1::2/64"}},
		{{Time: at(500), Kind: trace.KindEvent, Event: trace.EventResync, Detail: "notifications lost"}},
		{{Time: at(640), Kind: trace.KindEvent, IfIndex: 5, Dev: "evil\x1b[2J", Event: trace.EventLinkAdded}},
		{{Time: at(700), Kind: trace.KindEvent, IfIndex: 5, Dev: "evil\x1b[2J", Event: trace.EventLinkRemoved}},
	}
}

// TestTopView renders fixed rounds in terminals of several sizes.
func TestTopView(t *testing.T) {
	for _, tc := range []struct {
		name          string
		rounds        int // 1: no rates yet
		events        bool
		netns         string
		width, height int
	}{
		{"top-80x24.txt", 2, true, "laptop", 80, 24},
		{"top-first-round.txt", 1, false, "", 80, 24},
		// The connections cut and counted, no room for the events.
		{"top-short.txt", 2, true, "laptop", 80, 12},
		// The connections fit, three events do.
		{"top-events-cut.txt", 2, true, "laptop", 80, 19},
		{"top-narrow.txt", 2, true, "laptop", 40, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := &topView{netns: tc.netns}
			for sec := range tc.rounds {
				v.advance(topRound(3 + 2*sec))
			}
			if tc.events {
				for _, evs := range topEventsOf() {
					v.addEvents(evs)
				}
			}
			lines := v.lines(tc.width, tc.height)
			if len(lines) > tc.height {
				t.Errorf("%d lines, taller than %d", len(lines), tc.height)
			}
			for _, l := range lines {
				if n := len([]rune(l)); n > tc.width {
					t.Errorf("line of %d columns, wider than %d: %q", n, tc.width, l)
				}
				if strings.ContainsRune(l, '\x1b') {
					t.Errorf("escape character in %q", l)
				}
			}
			golden.Check(t, filepath.Join("testdata", tc.name), []byte(strings.Join(lines, "\n")+"\n"))
		})
	}
}

// TestTopKeepsLatestEvents: a view keeps the latest topEvents events,
// oldest first.
func TestTopKeepsLatestEvents(t *testing.T) {
	v := &topView{}
	for i := range 2 * topEvents {
		v.addEvents([]trace.Record{{Kind: trace.KindEvent, IfIndex: i + 1, Event: trace.EventUp}})
	}
	var got []int
	for _, e := range v.events {
		got = append(got, e.IfIndex)
	}
	if want := fmt.Sprint([]int{6, 7, 8, 9, 10}); fmt.Sprint(got) != want {
		t.Errorf("kept the events of links %v, want %s", got, want)
	}
}

// TestTerminalSize: what is not a terminal is 80x24.
func TestTerminalSize(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	for name, out := range map[string]io.Writer{"buffer": &bytes.Buffer{}, "pipe": w} {
		width, height, ok := terminalSize(out)
		if width != 80 || height != 24 || ok {
			t.Errorf("%s: %dx%d, terminal %v; want 80x24, not a terminal", name, width, height, ok)
		}
	}
}

// TestTopErrors: bad options are refused before anything is opened; top
// reads the kernel, never a test backend.
func TestTopErrors(t *testing.T) {
	runCommandCases(t, []commandCase{
		{line: "top now", code: ExitUsage, stderr: "Command \"now\" is unknown, try \"mptcpctl help\".\n"},
		{line: "top --interval 0s", code: ExitUsage, stderr: "Error: --interval 0s: must be positive\n"},
		{line: "-n missing top", code: ExitUsage,
			stderr: "Cannot open network namespace \"missing\": No such file or directory\n"},
		{line: "top --once", code: ExitFailure, stderr: "Error: top: reads the kernel, not this backend\n"},
	})
}
