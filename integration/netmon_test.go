package integration

// Real-kernel tests of the link/address/route monitor (nl/netmon). Each
// test watches a fresh network namespace and compares the state built from
// the monitor's events with what iproute2 shows there.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// netmonWait bounds every wait for an expected event.
const netmonWait = 5 * time.Second

// netmonWatch is a monitor of one namespace and the state its events built.
type netmonWatch struct {
	t     *testing.T
	ns    *nstest.NS
	m     *netmon.Monitor
	state *netmon.State
	last  []netmon.Event // the latest events, for failure messages
}

func netmonStart(t *testing.T, ns *nstest.NS, cfg netmon.Config) *netmonWatch {
	t.Helper()
	cfg.NetNS = ns.Handle().FD() // the monitor keeps its own descriptor
	m, err := netmon.Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("netmon.Start in %s: %v", ns, err)
	}
	t.Cleanup(func() { m.Close() })
	return &netmonWatch{t: t, ns: ns, m: m, state: netmon.NewState()}
}

// next applies the next event to the state; ok is false after timeout.
func (w *netmonWatch) next(timeout time.Duration) (netmon.Event, bool) {
	w.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case ev, ok := <-w.m.Events():
		if !ok {
			w.t.Fatal("the monitor stopped")
		}
		w.state.Apply(ev)
		if w.last = append(w.last, ev); len(w.last) > 30 {
			w.last = w.last[1:]
		}
		return ev, true
	case <-timer.C:
		return nil, false
	}
}

func (w *netmonWatch) history() string {
	var b strings.Builder
	for _, ev := range w.last {
		fmt.Fprintf(&b, "\n\t%v", ev)
	}
	return b.String()
}

// waitFor reads events until one matches.
func (w *netmonWatch) waitFor(what string, match func(netmon.Event) bool) netmon.Event {
	w.t.Helper()
	deadline := time.Now().Add(netmonWait)
	for {
		ev, ok := w.next(time.Until(deadline))
		if !ok {
			w.t.Fatalf("no event %s within %v; latest events:%s", what, netmonWait, w.history())
		}
		if match(ev) {
			return ev
		}
	}
}

// waitState reads events until the state satisfies cond.
func (w *netmonWatch) waitState(what string, cond func(*netmon.State) bool) {
	w.t.Helper()
	deadline := time.Now().Add(netmonWait)
	for !cond(w.state) {
		if _, ok := w.next(time.Until(deadline)); !ok {
			w.t.Fatalf("state never got %s within %v; latest events:%s", what, netmonWait, w.history())
		}
	}
}

// settle reads events until the stream is idle and the synced state
// equals what iproute2 shows.
func (w *netmonWatch) settle(what string, limit time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		for {
			if _, ok := w.next(150 * time.Millisecond); !ok {
				break
			}
		}
		diff := netmonDiffKernel(w.t, w.ns, w.state)
		if diff == "" && w.state.Synced() {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: after %v the monitor's state (synced %v) differs from iproute2's (-ip +monitor):\n%s\nlatest events:%s",
				what, limit, w.state.Synced(), diff, w.history())
		}
	}
}

func (w *netmonWatch) link(name string) netmon.Link {
	w.t.Helper()
	l, ok := w.state.LinkByName(name)
	if !ok {
		w.t.Fatalf("no link %s in the monitor's state", name)
	}
	return l
}

func netmonLinkIs(name string, cond func(netmon.Link) bool) func(*netmon.State) bool {
	return func(s *netmon.State) bool {
		l, ok := s.LinkByName(name)
		return ok && cond(l)
	}
}

func netmonAddrEvent(op netmon.Op, prefix string, cond func(netmon.Addr) bool) func(netmon.Event) bool {
	return func(ev netmon.Event) bool {
		ae, ok := ev.(netmon.AddrEvent)
		return ok && ae.Op == op && ae.Addr.Prefix.String() == prefix && cond(ae.Addr)
	}
}

func netmonIsSynced(ev netmon.Event) bool { _, ok := ev.(netmon.Synced); return ok }

// The views below are what both iproute2's JSON and the monitor's types
// can say, in one comparable form.

type netmonLinkView struct {
	Index                 int
	Name, OperState, HW   string
	MTU                   int
	Up, Carrier, Loopback bool
}

type netmonAddrView struct {
	Index                int
	Prefix, Scope, Flags string
}

type netmonRouteView struct {
	Dst, Gateway, Src string
	Index, Table      int
	Metric            int
}

// netmonComparedFlags are the address flags compared with iproute2, by
// its JSON keys; "dynamic" is its word for "not permanent".
var netmonComparedFlags = []struct {
	key  string
	flag netmon.AddrFlags
}{
	{"tentative", netmon.AddrTentative},
	{"nodad", netmon.AddrNoDAD},
	{"dadfailed", netmon.AddrDADFailed},
	{"deprecated", netmon.AddrDeprecated},
	{"noprefixroute", netmon.AddrNoPrefixRoute},
	{"optimistic", netmon.AddrOptimistic},
}

func netmonIPJSON(t *testing.T, ns *nstest.NS, v any, args ...string) {
	t.Helper()
	out := ns.MustRun("ip", append([]string{"-j"}, args...)...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("ip -j %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// netmonDiffKernel compares s with `ip -j link/addr/route show`; "" when
// they agree.
func netmonDiffKernel(t *testing.T, ns *nstest.NS, s *netmon.State) string {
	t.Helper()
	var ipLinks []map[string]any
	netmonIPJSON(t, ns, &ipLinks, "addr", "show")
	var wantLinks []netmonLinkView
	var wantAddrs []netmonAddrView
	index := map[string]int{}
	for _, l := range ipLinks {
		flags := netmonStrings(l["flags"])
		hw, _ := l["address"].(string)
		if strings.Trim(hw, "0:") == "" {
			hw = "" // lo: netmon reports none for all zeros
		}
		v := netmonLinkView{
			Index: netmonInt(l["ifindex"]), Name: l["ifname"].(string), MTU: netmonInt(l["mtu"]),
			OperState: l["operstate"].(string), HW: hw,
			Up: slices.Contains(flags, "UP"), Carrier: slices.Contains(flags, "LOWER_UP"), Loopback: slices.Contains(flags, "LOOPBACK"),
		}
		index[v.Name] = v.Index
		wantLinks = append(wantLinks, v)
		infos, _ := l["addr_info"].([]any)
		for _, ai := range infos {
			a := ai.(map[string]any)
			var fl []string
			for _, f := range netmonComparedFlags {
				if a[f.key] == true {
					fl = append(fl, f.key)
				}
			}
			if a["dynamic"] == true {
				fl = append(fl, "dynamic")
			}
			if a["secondary"] == true || a["temporary"] == true {
				fl = append(fl, "secondary")
			}
			wantAddrs = append(wantAddrs, netmonAddrView{Index: v.Index,
				Prefix: fmt.Sprintf("%s/%d", a["local"], netmonInt(a["prefixlen"])),
				Scope:  a["scope"].(string), Flags: strings.Join(fl, ",")})
		}
	}

	var wantRoutes []netmonRouteView
	for _, family := range []string{"-4", "-6"} {
		var routes []map[string]any
		netmonIPJSON(t, ns, &routes, family, "route", "show", "table", "all")
		for _, r := range routes {
			if _, ok := r["type"]; ok { // printed only when not unicast
				continue
			}
			table := 254
			switch tb, _ := r["table"].(string); tb {
			case "", "main":
			case "local":
				continue
			case "default":
				table = 253
			default:
				n, err := strconv.Atoi(tb)
				if err != nil {
					t.Fatalf("ip route: table %q", tb)
				}
				table = n
			}
			dst := r["dst"].(string)
			switch {
			case dst == "default" && family == "-4":
				dst = "0.0.0.0/0"
			case dst == "default":
				dst = "::/0"
			case !strings.Contains(dst, "/") && family == "-4":
				dst += "/32"
			case !strings.Contains(dst, "/"):
				dst += "/128"
			}
			gw, _ := r["gateway"].(string)
			src, _ := r["prefsrc"].(string)
			wantRoutes = append(wantRoutes, netmonRouteView{Dst: dst, Gateway: gw, Src: src,
				Index: index[r["dev"].(string)], Table: table, Metric: netmonInt(r["metric"])})
		}
	}

	var gotLinks []netmonLinkView
	for _, l := range s.Links() {
		hw := ""
		if l.HardwareAddr != nil {
			hw = l.HardwareAddr.String()
		}
		gotLinks = append(gotLinks, netmonLinkView{Index: l.Index, Name: l.Name, MTU: l.MTU, OperState: l.OperState.String(),
			HW: hw, Up: l.Up, Carrier: l.Carrier, Loopback: l.Loopback})
	}
	var gotAddrs []netmonAddrView
	for _, a := range s.Addrs() {
		var fl []string
		for _, f := range netmonComparedFlags {
			if a.Flags&f.flag != 0 {
				fl = append(fl, f.key)
			}
		}
		if a.Flags&netmon.AddrPermanent == 0 {
			fl = append(fl, "dynamic")
		}
		if a.Flags&netmon.AddrSecondary != 0 {
			fl = append(fl, "secondary")
		}
		gotAddrs = append(gotAddrs, netmonAddrView{Index: a.LinkIndex, Prefix: a.Prefix.String(), Scope: a.Scope.String(),
			Flags: strings.Join(fl, ",")})
	}
	var gotRoutes []netmonRouteView
	for _, r := range s.Routes() {
		v := netmonRouteView{Dst: r.Dst.String(), Index: r.LinkIndex, Table: r.Table, Metric: r.Priority}
		if r.Gateway.IsValid() {
			v.Gateway = r.Gateway.String()
		}
		if r.Src.IsValid() {
			v.Src = r.Src.String()
		}
		gotRoutes = append(gotRoutes, v)
	}

	sortViews := cmpopts.SortSlices(func(a, b any) bool { return fmt.Sprint(a) < fmt.Sprint(b) })
	return cmp.Diff(wantLinks, gotLinks, sortViews, cmpopts.EquateEmpty()) +
		cmp.Diff(wantAddrs, gotAddrs, sortViews, cmpopts.EquateEmpty()) +
		cmp.Diff(wantRoutes, gotRoutes, sortViews, cmpopts.EquateEmpty())
}

func netmonInt(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func netmonStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		if str, ok := s.(string); ok {
			out = append(out, str)
		}
	}
	return out
}

func TestNetmonLinksAddrsRoutes(t *testing.T) {
	ns, peer := nstest.New(t), nstest.New(t)
	hostNS, _ := os.Readlink("/proc/self/ns/net")

	w := netmonStart(t, ns, netmon.Config{})
	w.waitFor("Synced after the initial dump", netmonIsSynced)
	// Only the new namespace's lo: nothing of the host's.
	if links := w.state.Links(); len(links) != 1 || !links[0].Loopback || links[0].Name != "lo" {
		t.Fatalf("initial links %v, want only lo", links)
	}
	w.settle("initial state", netmonWait)

	// A veth pair; one end moves to the peer namespace.
	ns.MustRun("ip", "link", "add", "nm0", "type", "veth", "peer", "name", "nm1")
	w.waitState("nm0 and nm1 (veth)", func(s *netmon.State) bool {
		l0, ok0 := s.LinkByName("nm0")
		l1, ok1 := s.LinkByName("nm1")
		return ok0 && ok1 && l0.Kind == "veth" && l1.Kind == "veth" && !l0.Up
	})
	nm1 := w.link("nm1")
	ns.MustRun("ip", "link", "set", "nm1", "netns", peer.Name)
	w.waitFor("deletion of nm1 (moved away)", func(ev netmon.Event) bool {
		le, ok := ev.(netmon.LinkEvent)
		return ok && le.Op == netmon.OpDel && le.Link.Index == nm1.Index
	})

	ns.MustRun("ip", "link", "set", "nm0", "up")
	// The operstate the kernel reports here is DOWN or LOWERLAYERDOWN
	// depending on whether linkwatch ran for nm0 after the netns move
	// (mostly DOWN: 29 of 30 tries on 6.18); carrier is what matters.
	w.waitState("nm0 up without carrier (peer down)", netmonLinkIs("nm0", func(l netmon.Link) bool {
		return l.Up && !l.Carrier && (l.OperState == netmon.OperLowerLayerDown || l.OperState == netmon.OperDown)
	}))
	peer.MustRun("ip", "link", "set", "nm1", "up")
	w.waitState("nm0 with carrier", netmonLinkIs("nm0", func(l netmon.Link) bool {
		return l.Up && l.Carrier && l.OperState == netmon.OperUp
	}))
	nm0 := w.link("nm0")

	ns.MustRun("ip", "addr", "add", "10.77.0.1/24", "dev", "nm0")
	// One socket for all kinds keeps the kernel's order: the address
	// (RTM_NEWADDR) before the route it brings (RTM_NEWROUTE).
	w.waitFor("10.77.0.1/24", func(ev netmon.Event) bool {
		if re, ok := ev.(netmon.RouteEvent); ok && re.Route.Dst.String() == "10.77.0.0/24" {
			t.Errorf("the connected route came before its address: %v", re)
		}
		return netmonAddrEvent(netmon.OpNew, "10.77.0.1/24", func(a netmon.Addr) bool {
			return a.LinkIndex == nm0.Index && a.Flags&netmon.AddrPermanent != 0 && a.ValidLifetime == netmon.Forever
		})(ev)
	})
	w.waitState("the connected route", func(s *netmon.State) bool {
		for _, r := range s.LinkRoutes(nm0.Index) {
			if r.Dst.String() == "10.77.0.0/24" && r.Src.String() == "10.77.0.1" && r.Protocol.String() == "kernel" {
				return true
			}
		}
		return false
	})

	// IPv6 with DAD: tentative first, then not.
	ns.MustRun("ip", "addr", "add", "fd77::1/64", "dev", "nm0")
	w.waitFor("fd77::1/64 tentative", netmonAddrEvent(netmon.OpNew, "fd77::1/64", func(a netmon.Addr) bool {
		return a.Flags&netmon.AddrTentative != 0
	}))
	w.waitFor("fd77::1/64 after DAD", netmonAddrEvent(netmon.OpNew, "fd77::1/64", func(a netmon.Addr) bool {
		return a.Flags&(netmon.AddrTentative|netmon.AddrDADFailed) == 0
	}))
	ns.MustRun("ip", "addr", "add", "fd77::2/64", "dev", "nm0", "nodad")
	w.waitFor("fd77::2/64 nodad, never tentative", netmonAddrEvent(netmon.OpNew, "fd77::2/64", func(a netmon.Addr) bool {
		if a.Flags&netmon.AddrTentative != 0 {
			t.Errorf("nodad address reported tentative: %v", a)
		}
		return a.Flags&netmon.AddrNoDAD != 0
	}))
	w.settle("after adding addresses", netmonWait)

	// Default routes, added later.
	ns.MustRun("ip", "route", "add", "default", "via", "10.77.0.254", "dev", "nm0")
	ns.MustRun("ip", "-6", "route", "add", "default", "via", "fd77::fe", "dev", "nm0", "metric", "100")
	w.waitState("IPv4 and IPv6 default routes", func(s *netmon.State) bool {
		var got []string
		for _, r := range s.DefaultRoutes() {
			got = append(got, fmt.Sprintf("%s via %s dev %d table %d metric %d", r.Dst, r.Gateway, r.LinkIndex, r.Table, r.Priority))
		}
		return slices.Equal(got, []string{
			fmt.Sprintf("0.0.0.0/0 via 10.77.0.254 dev %d table 254 metric 0", nm0.Index),
			fmt.Sprintf("::/0 via fd77::fe dev %d table 254 metric 100", nm0.Index),
		})
	})
	w.settle("after adding default routes", netmonWait)

	// A route whose source is a second address goes with that address,
	// without RTM_DELROUTE; the first address stays.
	ns.MustRun("ip", "addr", "add", "10.77.0.2/24", "dev", "nm0")
	ns.MustRun("ip", "route", "add", "10.98.0.0/16", "via", "10.77.0.254", "src", "10.77.0.2")
	hasSrcRoute := func(s *netmon.State) bool {
		for _, r := range s.LinkRoutes(nm0.Index) {
			if r.Dst.String() == "10.98.0.0/16" && r.Src.String() == "10.77.0.2" {
				return true
			}
		}
		return false
	}
	w.waitState("the route with source 10.77.0.2", hasSrcRoute)
	ns.MustRun("ip", "addr", "del", "10.77.0.2/24", "dev", "nm0")
	w.waitState("the route gone with its source", func(s *netmon.State) bool { return !hasSrcRoute(s) })
	w.settle("after deleting the source address", netmonWait)

	// The one-shot dump agrees with the state built from events.
	snap, err := netmon.Snapshot(context.Background(), netmon.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatal(err)
	}
	if diff := netmonDiffKernel(t, ns, snap); diff != "" || !snap.Synced() {
		t.Errorf("Snapshot (synced %v) differs from iproute2 (-ip +snapshot):\n%s", snap.Synced(), diff)
	}

	// Carrier loss: the peer goes down (veth then says DOWN, not
	// LOWERLAYERDOWN as before the peer first came up).
	peer.MustRun("ip", "link", "set", "nm1", "down")
	w.waitState("nm0 without carrier", netmonLinkIs("nm0", func(l netmon.Link) bool {
		return l.Up && !l.Carrier && l.OperState != netmon.OperUp
	}))
	w.settle("after carrier loss", netmonWait)

	// Removing the last IPv4 address drops the IPv4 routes of the link
	// without RTM_DELROUTE: the monitor must notice anyway.
	ns.MustRun("ip", "addr", "del", "10.77.0.1/24", "dev", "nm0")
	w.waitFor("deletion of 10.77.0.1/24", netmonAddrEvent(netmon.OpDel, "10.77.0.1/24", func(netmon.Addr) bool { return true }))
	w.waitState("no IPv4 default route", func(s *netmon.State) bool {
		for _, r := range s.DefaultRoutes() {
			if r.Dst.Addr().Is4() {
				return false
			}
		}
		return true
	})
	w.settle("after deleting the IPv4 address", netmonWait)

	// Back with an IPv4 route, then the link goes down: IPv4 routes go
	// silently, IPv6 addresses and routes with notifications.
	ns.MustRun("ip", "addr", "add", "10.77.0.1/24", "dev", "nm0")
	ns.MustRun("ip", "route", "add", "10.99.0.0/16", "via", "10.77.0.254", "table", "100")
	w.waitState("the table 100 route", func(s *netmon.State) bool {
		for _, r := range s.LinkRoutes(nm0.Index) {
			if r.Table == 100 {
				return true
			}
		}
		return false
	})
	ns.MustRun("ip", "link", "set", "nm0", "down")
	w.waitState("nm0 down without routes or IPv6 addresses", func(s *netmon.State) bool {
		l, _ := s.LinkByName("nm0")
		if l.Up || len(s.LinkRoutes(nm0.Index)) != 0 {
			return false
		}
		for _, a := range s.LinkAddrs(nm0.Index) {
			if a.Prefix.Addr().Is6() {
				return false
			}
		}
		return true
	})
	w.settle("after link down", netmonWait)

	ns.MustRun("ip", "link", "del", "nm0")
	w.waitFor("deletion of nm0", func(ev netmon.Event) bool {
		le, ok := ev.(netmon.LinkEvent)
		return ok && le.Op == netmon.OpDel && le.Link.Index == nm0.Index
	})
	if addrs := w.state.LinkAddrs(nm0.Index); len(addrs) != 0 {
		t.Errorf("addresses of the deleted link remain: %v", addrs)
	}
	w.settle("after link deletion", netmonWait)

	if now, _ := os.Readlink("/proc/self/ns/net"); now != hostNS {
		t.Errorf("the process moved from network namespace %s to %s", hostNS, now)
	}
}

func TestNetmonLostEvents(t *testing.T) {
	ns := nstest.New(t)
	w := netmonStart(t, ns, netmon.Config{ReceiveBufferSize: 1}) // the kernel's minimum, a few messages
	w.waitFor("Synced after the initial dump", netmonIsSynced)

	// Events is not read during the burst: the monitor stalls on it, and
	// the kernel overruns the subscription sockets.
	const n = 3000
	batch := func(op string) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "addr %s 10.88.%d.%d/32 dev lo\n", op, i/250, i%250+1)
		}
		path := filepath.Join(t.TempDir(), op)
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	ns.MustRun("ip", "-batch", batch("add"))

	ev := w.waitFor("ResyncNeeded", func(ev netmon.Event) bool { _, ok := ev.(netmon.ResyncNeeded); return ok })
	if reason := ev.(netmon.ResyncNeeded).Reason; !errors.Is(reason, syscall.ENOBUFS) {
		t.Errorf("ResyncNeeded reason %q, want ENOBUFS", reason)
	}
	w.settle("after the burst of additions", 30*time.Second)
	if got := len(w.state.LinkAddrs(1)); got != n+2 { // and 127.0.0.1/8, ::1/128
		t.Errorf("%d addresses on lo, want %d", got, n+2)
	}

	ns.MustRun("ip", "-batch", batch("del"))
	w.settle("after the burst of deletions", 30*time.Second)
	if got := len(w.state.LinkAddrs(1)); got != 2 {
		t.Errorf("%d addresses on lo, want 2", got)
	}
}

// TestNetmonReceiveBuffer: as root, the notification socket gets the
// configured buffer even beyond net.core.rmem_max (SO_RCVBUFFORCE).
func TestNetmonReceiveBuffer(t *testing.T) {
	ns := nstest.New(t)
	raw, err := os.ReadFile("/proc/sys/net/core/rmem_max")
	if err != nil {
		t.Fatal(err)
	}
	rmemMax, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	size := 2 * rmemMax
	w := netmonStart(t, ns, netmon.Config{ReceiveBufferSize: size})
	w.waitFor("Synced after the initial dump", netmonIsSynced)
	// The kernel doubles SO_RCVBUF for its bookkeeping, and ss shows that.
	out := ns.MustRun("ss", "-f", "netlink", "-m")
	if want := fmt.Sprintf("rb%d,", 2*size); !strings.Contains(out, want) {
		t.Errorf("no netlink socket with %s in the namespace:\n%s", want, out)
	}
}
