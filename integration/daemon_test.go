package integration

// Real-kernel tests of the daemon (cmd/mptcpd): each runs mptcpd in fresh
// network namespaces, changes links, addresses, routes and the policy, and
// checks the endpoint table the daemon programs by reading it in-process
// (nl/mptcp), live MPTCP connections through their mptcp_pm events and
// sockets, and the daemon's log of its kernel writes.

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

const (
	subflow = mptcp.FlagSubflow
	backup  = mptcp.FlagBackup
	signal  = mptcp.FlagSignal
)

// newDaemonNS is a fresh namespace where deleting an IPv4 address keeps
// the others of its prefix (promote_secondaries, as systemd sets it):
// the tests delete addresses in any order.
func newDaemonNS(t *testing.T) *nstest.NS {
	t.Helper()
	ns := nstest.New(t)
	ns.MustRun("sysctl", "-q", "-w", "net.ipv4.conf.all.promote_secondaries=1")
	return ns
}

// wlanPolicy makes subflow endpoints of the addresses of wlan* links.
const wlanPolicy = "match name=wlan*\n    flags subflow\n"

func TestDaemonAddresses(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	nstest.Veth(t, ns, "eth0", ns, "epeer")
	d := startMptcpd(t, ns, wlanPolicy+"match name=eth*\n    flags subflow backup\n")
	wlan, eth := linkIndex(t, ns, "wlan0"), linkIndex(t, ns, "eth0")
	w4, w6 := ep("10.1.0.1", subflow, wlan), ep("2001:db8:1::1", subflow, wlan)
	e4, e6 := ep("10.2.0.1", subflow|backup, eth), ep("2001:db8:2::1", subflow|backup, eth)
	// Each step's table is exact, so an endpoint that a step must not
	// make (wpeer matches no rule) would show up at the next.
	for _, s := range []struct {
		cmd  string
		want []mptcp.Endpoint
	}{
		{"addr add 10.1.0.1/24 dev wlan0", []mptcp.Endpoint{w4}},
		{"addr add 2001:db8:1::1/64 dev wlan0 nodad", []mptcp.Endpoint{w4, w6}},
		{"addr add 10.3.0.1/24 dev wpeer", []mptcp.Endpoint{w4, w6}},
		{"addr add 10.2.0.1/24 dev eth0", []mptcp.Endpoint{w4, w6, e4}},
		{"addr add 2001:db8:2::1/64 dev eth0 nodad", []mptcp.Endpoint{w4, w6, e4, e6}},
		{"addr del 10.1.0.1/24 dev wlan0", []mptcp.Endpoint{w6, e4, e6}},
		{"addr del 2001:db8:1::1/64 dev wlan0", []mptcp.Endpoint{e4, e6}},
		{"addr del 10.2.0.1/24 dev eth0", []mptcp.Endpoint{e6}},
		{"addr del 2001:db8:2::1/64 dev eth0", nil},
	} {
		ipBatch(t, ns, s.cmd)
		d.waitEndpoints(t, "after ip "+s.cmd, s.want...)
	}
}

// TestDaemonLinkState takes wlan0 away in each way a link goes and, where
// it comes back, checks the endpoints return.
func TestDaemonLinkState(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name     string
		down, up string // ip commands; up "" when the link does not return
	}{
		{"carrier", "link set wpeer down", "link set wpeer up"},
		{"admin", "link set wlan0 down", "link set wlan0 up"},
		{"delete", "link del wlan0", ""},
		{"netns", "link set wlan0 netns %s", ""}, // %s: another namespace
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			ns := newDaemonNS(t)
			nstest.Veth(t, ns, "wlan0", ns, "wpeer")
			// Without it an admin down flushes the IPv6 address.
			ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf.wlan0.keep_addr_on_down=1")
			ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0", "addr add 2001:db8:1::1/64 dev wlan0 nodad")
			d := startMptcpd(t, ns, wlanPolicy)
			wlan := linkIndex(t, ns, "wlan0")
			both := []mptcp.Endpoint{ep("10.1.0.1", subflow, wlan), ep("2001:db8:1::1", subflow, wlan)}
			d.waitEndpoints(t, "addresses present at start", both...)

			down := c.down
			if strings.Contains(down, "%s") {
				down = fmt.Sprintf(down, newDaemonNS(t).Name)
			}
			ipBatch(t, ns, down)
			d.waitEndpoints(t, "after ip "+down)
			if c.up != "" {
				ipBatch(t, ns, c.up)
				d.waitEndpoints(t, "after ip "+c.up, both...)
			}
		})
	}
}

// TestDaemonIPv6DAD checks that a tentative address gets its endpoint only
// once duplicate address detection has passed, and one whose detection
// failed never gets one.
func TestDaemonIPv6DAD(t *testing.T) {
	t.Parallel()
	ns, peer := newDaemonNS(t), newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", peer, "wpeer")
	const unique, dup = "2001:db8:1::1", "2001:db8:1::2"
	// Two probes a second apart keep the addresses tentative for 2-3 s,
	// far longer than the check below takes.
	ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf.wlan0.accept_dad=1", "net.ipv6.conf.wlan0.dad_transmits=2")
	// The peer has dup already: wlan0's detection for it fails.
	peer.MustRun("ip", "addr", "add", dup+"/64", "dev", "wpeer", "nodad")
	d := newMptcpd(t, ns, wlanPolicy+markerRule)
	d.addMarker(t)
	d.start(t)
	wlan := linkIndex(t, ns, "wlan0")

	ipBatch(t, ns, "addr add "+unique+"/64 dev wlan0", "addr add "+dup+"/64 dev wlan0")
	d.barrier(t)
	if f := addrFlags(t, ns, "wlan0", unique); !slices.Contains(f, "tentative") {
		t.Fatalf("%s is no longer tentative (%v) after the check: it proved nothing", unique, f)
	}
	ok := waitFor(startTimeout, func() bool {
		u, f := addrFlags(t, ns, "wlan0", unique), addrFlags(t, ns, "wlan0", dup)
		return !slices.Contains(u, "tentative") && slices.Contains(f, "dadfailed")
	})
	if !ok {
		t.Fatalf("after %v: %s %v, want DAD done; %s %v, want dadfailed", startTimeout,
			unique, addrFlags(t, ns, "wlan0", unique), dup, addrFlags(t, ns, "wlan0", dup))
	}
	want := ep(unique, subflow, wlan)
	d.waitEndpoints(t, "after DAD", want)
	d.barrier(t, want) // the daemon has seen dup fail
	if n := len(d.logLines(`msg="added endpoint"`, "addr="+unique+" ")); n != 1 {
		t.Errorf("%d endpoint additions for %s, want 1", n, unique)
	}
	if l := d.logLines(`msg="added endpoint"`, "addr="+dup+" "); len(l) != 0 {
		t.Errorf("the address whose DAD failed got an endpoint: %q", l)
	}
}

// addrFlags returns the words after the scope of address addr on dev, as
// ip shows them ("tentative", "dadfailed", ...); nil when it is not there.
func addrFlags(t *testing.T, ns *nstest.NS, dev, addr string) []string {
	t.Helper()
	for _, l := range strings.Split(ns.MustRun("ip", "-o", "addr", "show", "dev", dev), "\n") {
		f := strings.Fields(l)
		i := slices.Index(f, "scope")
		if i < 0 || len(f) < 4 || !strings.HasPrefix(f[3], addr+"/") || i+2 > len(f) {
			continue
		}
		var out []string
		for _, w := range f[i+2:] {
			if w == "\\" {
				break
			}
			out = append(out, w)
		}
		return out
	}
	return nil
}

// TestDaemonCheckRoute checks that with check-route an address has an
// endpoint exactly while its link has a default route of its family.
func TestDaemonCheckRoute(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		family, addr, add, route string
	}{
		{"IPv4", "10.1.0.1", "addr add 10.1.0.1/24 dev wlan0", "default via 10.1.0.254 dev wlan0"},
		{"IPv6", "2001:db8:1::1", "addr add 2001:db8:1::1/64 dev wlan0 nodad", "default via 2001:db8:1::fe dev wlan0"},
	} {
		t.Run(c.family, func(t *testing.T) {
			t.Parallel()
			ns := newDaemonNS(t)
			nstest.Veth(t, ns, "wlan0", ns, "wpeer")
			d := newMptcpd(t, ns, "check-route yes\n"+wlanPolicy+markerRule)
			d.addMarker(t)
			d.start(t)
			ipBatch(t, ns, c.add)
			d.barrier(t) // no endpoint without a default route
			ipBatch(t, ns, "route add "+c.route)
			d.waitEndpoints(t, "after the default route came", ep(c.addr, subflow, linkIndex(t, ns, "wlan0")))
			ipBatch(t, ns, "route del "+c.route)
			d.waitEndpoints(t, "after the default route went")
		})
	}
}

// daemonTopology is a client namespace, where the daemon runs, and a
// server namespace, joined by two links: eth0 10.0.1.2 - s1 10.0.1.1
// carries a connection's initial subflow, and wlan0 10.0.2.2 - s2 10.0.2.1
// the additional one that the kernel opens from the daemon's endpoint on
// wlan0 to the server's 10.0.1.1 (bound to wlan0, it leaves through it).
type daemonTopology struct {
	client, server *nstest.NS
}

// newDaemonTopology is the two-link daemonTopology.
func newDaemonTopology(t *testing.T) daemonTopology {
	t.Helper()
	return newUSTopology(t, 2)
}

// liveConn is a held MPTCP connection from the client namespace with an
// additional subflow over one of the daemon's endpoints, watched from
// both ends: whatever tears it down shows as an mptcp_pm event or a
// missing socket.
type liveConn struct {
	ns             *nstest.NS // the client's
	held           *heldConn
	client, server *pmEvents
	local, remote  netip.AddrPort // the additional subflow
	cmark, smark   int            // events before these are not checked
}

// connWait bounds the steps of the echo helper.
const connWait = 10 * time.Second

func openLiveConn(t *testing.T, top daemonTopology, echo string, id mptcp.ID) *liveConn {
	t.Helper()
	c := &liveConn{ns: top.client, client: listenPM(t, top.client), server: listenPM(t, top.server)}
	startServer(t, top.server, echo, "10.0.1.1:5000")
	c.held = holdConnection(t, top.client, echo, connWait, 1, "10.0.1.1:5000")
	c.local, c.remote = subflowOver(t, c.client, id)
	c.mark(t)
	return c
}

// mark starts the window that checkNoChurn looks at.
func (c *liveConn) mark(t *testing.T) {
	t.Helper()
	c.client.settle(t)
	c.server.settle(t)
	c.cmark, c.smark = len(c.client.seen), len(c.server.seen)
}

// checkNoChurn checks that since mark neither end saw a subflow or the
// connection close or an address withdrawn, and that the additional
// subflow is still established.
func (c *liveConn) checkNoChurn(t *testing.T, what string) {
	t.Helper()
	for _, side := range []struct {
		ev   *pmEvents
		mark int
	}{{c.client, c.cmark}, {c.server, c.smark}} {
		side.ev.settle(t)
		if evs := side.ev.teardowns(side.mark); len(evs) > 0 {
			t.Errorf("%s: teardown events in %s:\n%s", what, side.ev.name, formatEvents(evs))
		}
	}
	if !established(t, c.ns, c.local, c.remote) {
		t.Errorf("%s: the subflow %s -> %s is gone", what, c.local, c.remote)
	}
}

// TestDaemonPolicyReload changes an endpoint's flags by a policy reload
// under a live subflow, which must stay, then reloads a broken policy,
// which must change nothing.
func TestDaemonPolicyReload(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newDaemonTopology(t)
	d := startMptcpd(t, top.client, wlanPolicy)
	want := d.waitEndpoints(t, "at start", ep("10.0.2.2", subflow, linkIndex(t, top.client, "wlan0")))[0]
	conn := openLiveConn(t, top, echo, want.ID)

	writes := len(d.writes())
	d.files.setPolicy(t, "match name=wlan*\n    flags subflow backup\n")
	d.signal(t, syscall.SIGHUP)
	d.waitLog(t, endpointTimeout, 1, `msg="configuration reloaded"`)
	want.Flags |= backup
	d.waitEndpoints(t, "after the reload to subflow backup (same id)", want)
	// SET_FLAGS sends MP_PRIO on the subflow: the server sees it turn backup.
	conn.server.wait(t, "SUB_PRIORITY backup", conn.smark, func(e mptcp.Event) bool {
		return e.Type == mptcp.EventSubPriority && e.Backup
	})
	if w := d.writes()[writes:]; len(w) != 1 || !strings.Contains(w[0], `msg="changed endpoint flags"`) {
		t.Errorf("kernel writes of the reload: %q, want one flag change", w)
	}
	conn.checkNoChurn(t, "reload to subflow backup")

	// A broken policy is reported by file and line and changes nothing.
	conn.mark(t)
	writes = len(d.writes())
	d.files.setPolicy(t, "match name=wlan*\n    flags subflow bogus\n")
	d.signal(t, syscall.SIGHUP)
	d.waitLog(t, endpointTimeout, 1, `msg="reload failed`)
	if l := d.logLines(`msg="reload failed`)[0]; !strings.Contains(l, d.files.policy+":2:") {
		t.Errorf("the reload error does not name %s:2: %s", d.files.policy, l)
	}
	if got := d.dump(t); !sameEndpoints(got, []mptcp.Endpoint{want}) {
		t.Errorf("endpoints after the broken reload:\n%swant:\n%s", formatEndpoints(got), formatEndpoints([]mptcp.Endpoint{want}))
	}
	if w := d.writes()[writes:]; len(w) != 0 {
		t.Errorf("kernel writes after the broken reload: %q", w)
	}
	conn.checkNoChurn(t, "broken reload")
	conn.held.release(t, connWait)

	// The running policy still decides.
	top.client.MustRun("ip", "addr", "add", "10.0.2.3/24", "dev", "wlan0")
	d.waitEndpoints(t, "new address under the kept policy", want, ep("10.0.2.3", subflow|backup, want.IfIndex))
}

// TestDaemonForeignEndpoints checks that endpoints someone else made are
// left as they are, also on an address the policy wants, until a rule
// with adopt takes them over.
func TestDaemonForeignEndpoints(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	wlan := linkIndex(t, ns, "wlan0")
	ipBatch(t, ns,
		"mptcp endpoint add 10.9.0.1 id 7 signal",                   // no rule wants it
		"mptcp endpoint add 10.1.0.1 id 5 dev wlan0 subflow backup") // the rule wants other flags
	unwanted := mptcp.Endpoint{ID: 7, Addr: netip.MustParseAddr("10.9.0.1"), Flags: signal}
	held := mptcp.Endpoint{ID: 5, Addr: netip.MustParseAddr("10.1.0.1"), Flags: subflow | backup, IfIndex: wlan}
	d := startMptcpd(t, ns, wlanPolicy)

	own4, own6 := ep("10.1.0.2", subflow, wlan), ep("2001:db8:1::1", subflow, wlan)
	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0", "addr add 10.1.0.2/24 dev wlan0", "addr add 2001:db8:1::1/64 dev wlan0 nodad")
	d.waitEndpoints(t, "foreign endpoints beside the daemon's", unwanted, held, own4, own6)
	ipBatch(t, ns, "addr del 10.1.0.1/24 dev wlan0", "addr del 10.1.0.2/24 dev wlan0")
	d.waitEndpoints(t, "after the addresses went (foreign stays)", unwanted, held, own6)
	for _, l := range d.writes() {
		for _, w := range []string{" id=5 ", " id=7 ", " addr=10.1.0.1 ", " addr=10.9.0.1 "} {
			if strings.Contains(l+" ", w) {
				t.Errorf("kernel write on a foreign endpoint: %s", l)
			}
		}
	}

	// With adopt the held endpoint becomes the daemon's: it gets the
	// rule's flags in place, and goes with its address.
	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0")
	d.files.setPolicy(t, "match name=wlan*\n    flags subflow\n    adopt yes\n")
	d.signal(t, syscall.SIGHUP)
	adopted := held
	adopted.Flags = subflow
	d.waitEndpoints(t, "after the reload with adopt", unwanted, adopted, own6)
	d.waitLog(t, endpointTimeout, 1, `msg="adopting endpoint" id=5 `)
	ipBatch(t, ns, "addr del 10.1.0.1/24 dev wlan0")
	d.waitEndpoints(t, "after the adopted endpoint's address went", unwanted, own6)
}

// TestDaemonRestartAfterKill kills the daemon with SIGKILL under a live
// subflow and restarts it on the same state: the new run must write
// nothing and still own its endpoints.
func TestDaemonRestartAfterKill(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newDaemonTopology(t)
	top.client.MustRun("ip", "addr", "add", "2001:db8:2::2/64", "dev", "wlan0", "nodad")
	d := startMptcpd(t, top.client, wlanPolicy)
	wlan := linkIndex(t, top.client, "wlan0")
	before := d.waitEndpoints(t, "at start", ep("10.0.2.2", subflow, wlan), ep("2001:db8:2::2", subflow, wlan))
	// The limits are set after the endpoints, in the same pass.
	d.waitLog(t, endpointTimeout, 1, "msg=reconciled", "changed=true")
	v4 := sortedEndpoints(before)[0]
	limits := nlLimitsText(t, d)
	conn := openLiveConn(t, top, echo, v4.ID)

	d.kill(t)
	d.start(t)
	d.waitLog(t, endpointTimeout, 1, "msg=reconciled") // the new run's first pass is done
	if w := d.writes(); len(w) != 0 {
		t.Errorf("kernel writes after the restart: %q", w)
	}
	if after := d.dump(t); !slices.Equal(sortedEndpoints(after), sortedEndpoints(before)) {
		t.Errorf("endpoints after the restart:\n%swant, as before:\n%s", formatEndpoints(after), formatEndpoints(before))
	}
	if got := nlLimitsText(t, d); got != limits {
		t.Errorf("limits after the restart: %s, before: %s", got, limits)
	}
	conn.checkNoChurn(t, "restart after SIGKILL")
	conn.held.release(t, connWait)

	// Still the daemon's: they go with their addresses.
	top.client.MustRun("ip", "addr", "del", "2001:db8:2::2/64", "dev", "wlan0")
	d.waitEndpoints(t, "after the IPv6 address went", v4)
}

// nlLimitsText is the namespace's limits, for comparison.
func nlLimitsText(t *testing.T, d *mptcpd) string {
	t.Helper()
	l, err := d.pm.Limits()
	if err != nil {
		t.Fatalf("limits in %s: %v", d.ns, err)
	}
	return fmt.Sprintf("subflows %d add_addr_accepted %d", *l.Subflows, *l.AddAddrAccepted)
}

// TestDaemonSharedStateDir runs two daemons in two namespaces on one state
// directory: each keeps its own record, so after both were killed and
// restarted each still owns its endpoints.
func TestDaemonSharedStateDir(t *testing.T) {
	t.Parallel()
	var ds []*mptcpd
	for i := range 2 {
		ns := newDaemonNS(t)
		nstest.Veth(t, ns, "wlan0", ns, "wpeer")
		// Different addresses, the same ids: a record of the other
		// namespace would make the endpoint look foreign.
		ns.MustRun("ip", "addr", "add", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", "wlan0")
		d := newMptcpd(t, ns, wlanPolicy)
		if i > 0 {
			d.files.state = ds[0].files.state
		}
		d.start(t)
		ds = append(ds, d)
	}
	tables := make([][]mptcp.Endpoint, len(ds))
	for i, d := range ds {
		tables[i] = d.waitEndpoints(t, "at start in "+d.ns.Name, ep(fmt.Sprintf("10.%d.0.1", i+1), subflow, linkIndex(t, d.ns, "wlan0")))
	}
	// A namespace's record is its state file and journal (.wal); a short
	// run may have written only the journal.
	files, _ := filepath.Glob(filepath.Join(ds[0].files.state, "netns-*.json*")) // not the control sockets
	owners := map[string]bool{}
	for _, f := range files {
		owners[strings.TrimSuffix(f, ".wal")] = true
	}
	if len(owners) != 2 {
		t.Errorf("state files %q, want the files of two namespaces", files)
	}
	for _, d := range ds {
		d.kill(t)
	}
	for i, d := range ds {
		d.start(t)
		d.waitLog(t, endpointTimeout, 1, "msg=reconciled")
		if w := d.writes(); len(w) != 0 {
			t.Errorf("%s: kernel writes after the restart: %q", d.ns, w)
		}
		if got := d.dump(t); !slices.Equal(got, tables[i]) {
			t.Errorf("%s: endpoints after the restart:\n%swant:\n%s", d.ns, formatEndpoints(got), formatEndpoints(tables[i]))
		}
	}
	for i, d := range ds {
		d.ns.MustRun("ip", "addr", "del", fmt.Sprintf("10.%d.0.1/24", i+1), "dev", "wlan0")
		d.waitEndpoints(t, "after the address went in "+d.ns.Name)
	}
}

// flapLink is a link of the flap storm, its veth peer, and the addresses
// the storm picks from.
type flapLink struct {
	name, peer string
	pool       []string // "PREFIX" as ip addr takes it
	final      []string // the addresses left at the end
	flags      mptcp.Flags
}

// flapStorm returns n random ip commands that add and delete addresses of
// links and take the links and their peers down and up, followed by the
// commands that bring everything to the final state: links up, exactly
// the final addresses. It models the state to emit only commands that
// succeed; IPv6 addresses must survive a link down (keep_addr_on_down).
func flapStorm(rng *rand.Rand, links []flapLink, n int) []string {
	present := map[string]bool{} // "dev PREFIX"
	down := map[string]bool{}    // link names
	addrCmd := func(op, dev, p string) string {
		c := "addr " + op + " " + p + " dev " + dev
		if op == "add" && strings.Contains(p, ":") {
			c += " nodad"
		}
		return c
	}
	var cmds []string
	for range n {
		l := links[rng.IntN(len(links))]
		switch r := rng.IntN(10); {
		case r < 8:
			p := l.pool[rng.IntN(len(l.pool))]
			key := l.name + " " + p
			op := "add"
			if present[key] {
				op = "del"
			}
			present[key] = !present[key]
			cmds = append(cmds, addrCmd(op, l.name, p))
		default:
			dev := l.name
			if r == 9 {
				dev = l.peer // carrier
			}
			state := "down"
			if down[dev] {
				state = "up"
			}
			down[dev] = !down[dev]
			cmds = append(cmds, "link set "+dev+" "+state)
		}
	}
	for _, l := range links {
		for _, dev := range []string{l.name, l.peer} {
			if down[dev] {
				cmds = append(cmds, "link set "+dev+" up")
			}
		}
		for _, p := range l.pool {
			if keep := slices.Contains(l.final, p); present[l.name+" "+p] != keep {
				op := map[bool]string{true: "add", false: "del"}[keep]
				cmds = append(cmds, addrCmd(op, l.name, p))
			}
		}
	}
	return cmds
}

// TestDaemonFlapStorm fires thousands of address and link changes at the
// daemon and checks that it ends with exactly the table the final state
// wants.
func TestDaemonFlapStorm(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	links := []flapLink{
		{name: "wlan0", peer: "wpeer", final: []string{"10.1.0.1/24", "2001:db8:1::1/64"}, flags: subflow},
		{name: "eth0", peer: "epeer", final: []string{"10.2.0.1/24", "10.2.0.2/24", "2001:db8:2::1/64"}, flags: subflow | backup},
	}
	var want []mptcp.Endpoint
	for i := range links {
		l := &links[i]
		nstest.Veth(t, ns, l.name, ns, l.peer)
		ns.MustRun("sysctl", "-q", "-w", "net.ipv6.conf."+l.name+".keep_addr_on_down=1")
		for j := 1; j <= 10; j++ {
			l.pool = append(l.pool, fmt.Sprintf("10.%d.0.%d/24", i+1, j), fmt.Sprintf("2001:db8:%d::%d/64", i+1, j))
		}
		for _, p := range l.final {
			want = append(want, ep(strings.TrimSuffix(p, p[strings.IndexByte(p, '/'):]), l.flags, linkIndex(t, ns, l.name)))
		}
	}
	d := startMptcpd(t, ns, wlanPolicy+"match name=eth*\n    flags subflow backup\n")

	seed := uint64(time.Now().UnixNano())
	t.Logf("storm seed %d", seed)
	cmds := flapStorm(rand.New(rand.NewPCG(seed, 0)), links, 2400)
	began := time.Now()
	ipBatch(t, ns, cmds...)
	t.Logf("%d changes in %v", len(cmds), time.Since(began))
	for _, l := range links {
		if got := globalAddrs(t, ns, l.name); !slices.Equal(got, sortedStrings(l.final)) {
			t.Fatalf("the storm left %s with %v, want %v: the test's model is wrong", l.name, got, l.final)
		}
	}
	d.waitEndpoints(t, "after the storm", want...)
	t.Logf("table exact %v after the storm began", time.Since(began))
}

// globalAddrs returns the global addresses of dev with their prefix
// lengths, sorted.
func globalAddrs(t *testing.T, ns *nstest.NS, dev string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(ns.MustRun("ip", "-o", "addr", "show", "dev", dev, "scope", "global"), "\n") {
		if f := strings.Fields(l); len(f) >= 4 {
			out = append(out, f[3])
		}
	}
	return sortedStrings(out)
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestDaemonLostEvents shrinks the daemon's rtnetlink buffer so that a
// burst of changes overruns it: the daemon must notice, re-read the
// state and end with the exact table.
func TestDaemonLostEvents(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := startMptcpd(t, ns, wlanPolicy, "--netlink-rcvbuf", "4096")
	wlan := linkIndex(t, ns, "wlan0")
	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0", "addr add 2001:db8:1::1/64 dev wlan0 nodad")
	want := []mptcp.Endpoint{ep("10.1.0.1", subflow, wlan), ep("2001:db8:1::1", subflow, wlan)}
	d.waitEndpoints(t, "before the burst", want...)

	// A burst adds and removes 200 addresses the policy wants and flaps
	// the link; overrunning is likely but not certain, so try a few.
	var burst []string
	for i := range 200 {
		burst = append(burst, fmt.Sprintf("addr add 10.1.%d.%d/16 dev wlan0", 1+i/200, 1+i%200))
	}
	burst = append(burst, "link set wlan0 down", "link set wlan0 up")
	for i := range 200 {
		burst = append(burst, fmt.Sprintf("addr del 10.1.%d.%d/16 dev wlan0", 1+i/200, 1+i%200))
	}
	// The IPv6 address goes with the link down: add it back.
	burst = append(burst, "addr add 2001:db8:1::1/64 dev wlan0 nodad")
	const rounds = 5
	for round := 1; ; round++ {
		ipBatch(t, ns, burst...)
		d.waitEndpoints(t, fmt.Sprintf("after burst %d", round), want...)
		if len(d.logLines("network events were lost")) > 0 {
			break
		}
		if round == rounds {
			t.Fatalf("no lost events logged after %d bursts of %d changes", rounds, len(burst))
		}
	}
	t.Logf("lost events: %q", d.logLines("network events were lost"))
}

// TestDaemonEndpointLimit wants more endpoints than the kernel's 8 from
// two rules of different priority: the 8 best ranked get in, the log
// names those left out, and a place that frees up goes to the next.
func TestDaemonEndpointLimit(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "eth0", ns, "epeer")
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := startMptcpd(t, ns, "match name=eth*\n    flags subflow\n    priority 20\n"+
		"match name=wlan*\n    flags subflow backup\n    priority 10\n")
	eth, wlan := linkIndex(t, ns, "eth0"), linkIndex(t, ns, "wlan0")
	var cmds []string
	var want []mptcp.Endpoint
	for i := 1; i <= 5; i++ {
		cmds = append(cmds, fmt.Sprintf("addr add 10.2.0.%d/24 dev eth0", i))
		want = append(want, ep(fmt.Sprintf("10.2.0.%d", i), subflow, eth))
	}
	cmds = append(cmds, "addr add 10.1.0.1/24 dev wlan0", "addr add 10.1.0.2/24 dev wlan0")
	for i := 1; i <= 3; i++ {
		cmds = append(cmds, fmt.Sprintf("addr add 2001:db8:1::%d/64 dev wlan0 nodad", i))
	}
	ipBatch(t, ns, cmds...)
	// Priority first, then IPv4 before IPv6, then the lower address.
	wlanEP := func(a string) mptcp.Endpoint { return ep(a, subflow|backup, wlan) }
	want = append(want, wlanEP("10.1.0.1"), wlanEP("10.1.0.2"), wlanEP("2001:db8:1::1"))
	d.waitEndpoints(t, "ten wanted", want...)
	const leftOut = `msg="endpoint left out`
	for _, a := range []string{"2001:db8:1::2/64", "2001:db8:1::3/64"} {
		d.waitLog(t, endpointTimeout, 1, leftOut, "wlan0 "+a)
	}
	third := len(d.logLines(leftOut, "wlan0 2001:db8:1::3/64"))

	ns.MustRun("ip", "addr", "del", "10.2.0.3/24", "dev", "eth0")
	want = slices.DeleteFunc(want, func(e mptcp.Endpoint) bool { return e.Addr == netip.MustParseAddr("10.2.0.3") })
	d.waitEndpoints(t, "after a high-priority address went", append(want, wlanEP("2001:db8:1::2"))...)
	// The set left out changed to ::3 alone, which is said again.
	d.waitLog(t, endpointTimeout, third+1, leftOut, "wlan0 2001:db8:1::3/64")
}

// TestDaemonRemoveOnExit stops the daemon with SIGTERM: with
// --remove-on-exit its own endpoints go and foreign ones stay; without,
// all stay.
func TestDaemonRemoveOnExit(t *testing.T) {
	t.Parallel()
	for _, remove := range []bool{false, true} {
		t.Run(fmt.Sprintf("remove=%v", remove), func(t *testing.T) {
			t.Parallel()
			ns := newDaemonNS(t)
			nstest.Veth(t, ns, "wlan0", ns, "wpeer")
			ipBatch(t, ns, "mptcp endpoint add 10.9.0.1 id 9 signal",
				"addr add 10.1.0.1/24 dev wlan0", "addr add 2001:db8:1::1/64 dev wlan0 nodad")
			var extra []string
			if remove {
				extra = append(extra, "--remove-on-exit")
			}
			d := startMptcpd(t, ns, wlanPolicy, extra...)
			wlan := linkIndex(t, ns, "wlan0")
			foreign := mptcp.Endpoint{ID: 9, Addr: netip.MustParseAddr("10.9.0.1"), Flags: signal}
			all := d.waitEndpoints(t, "running", foreign, ep("10.1.0.1", subflow, wlan), ep("2001:db8:1::1", subflow, wlan))
			d.proc.waitIdle(stopTimeout) // stopping a busy daemon: TestDaemonStopWhileBusy
			if err := d.proc.terminate(stopTimeout); err != nil {
				t.Fatal(err)
			}
			want := all
			if remove {
				want = []mptcp.Endpoint{foreign}
			}
			if got := d.dump(t); !sameEndpoints(got, want) {
				t.Errorf("endpoints after SIGTERM:\n%swant:\n%s", formatEndpoints(got), formatEndpoints(want))
			}
		})
	}
}

// TestDaemonStopWhileBusy sends SIGTERM while the daemon is in the middle
// of a storm of changes: it must still exit cleanly (status 0) and, with
// --remove-on-exit, leave none of its endpoints behind.
func TestDaemonStopWhileBusy(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	d := newMptcpd(t, ns, wlanPolicy, "--remove-on-exit")
	var storm []string
	for range 100 {
		for i := 1; i <= 4; i++ {
			storm = append(storm, fmt.Sprintf("addr add 10.1.0.%d/24 dev wlan0", i))
		}
		for i := 1; i <= 4; i++ {
			storm = append(storm, fmt.Sprintf("addr del 10.1.0.%d/24 dev wlan0", i))
		}
	}
	// The stop races with the daemon's work: try it a few times.
	for run := 1; run <= 5; run++ {
		d.start(t)
		ipBatch(t, ns, "addr add 10.1.0.10/24 dev wlan0")
		d.waitEndpoints(t, "before the storm", ep("10.1.0.10", subflow, linkIndex(t, ns, "wlan0")))
		busy := start(t, "ip -batch storm", ipBatchCommand(t, ns, storm...))
		// Deletions take the kernel milliseconds each: while the daemon
		// logs them it is inside a pass.
		d.waitLog(t, endpointTimeout, 3, `msg="deleted endpoint"`)
		err := d.proc.terminate(stopTimeout)
		busy.stop()
		if err != nil {
			t.Errorf("run %d: %v", run, err)
		}
		if got := d.dump(t); len(got) != 0 {
			t.Errorf("run %d: endpoints left after SIGTERM with --remove-on-exit:\n%s", run, formatEndpoints(got))
		}
		if t.Failed() {
			t.FailNow()
		}
		ns.MustRun("ip", "addr", "flush", "dev", "wlan0")
	}
}

// TestDaemonSourceRouting gives the second uplink, wlan0, source routing:
// its own table (route-table-base 27000 + ifindex) with its default route
// and connected prefix, and a "from ADDRESS" rule per address, which go
// with the addresses.
func TestDaemonSourceRouting(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "eth0", ns, "epeer")
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	ipBatch(t, ns,
		"addr add 10.1.0.2/24 dev eth0",
		"addr add 10.2.0.2/24 dev wlan0",
		"addr add 2001:db8:2::2/64 dev wlan0 nodad",
		"route add default via 10.1.0.254 dev eth0 metric 100",
		"route add default via 10.2.0.254 dev wlan0 metric 200",
		"route add default via 2001:db8:2::fe dev wlan0 metric 200")
	d := startMptcpd(t, ns, "match name=wlan*\n    flags subflow\n    source-routing yes\nmatch name=eth*\n    flags subflow\n")
	eth, wlan := linkIndex(t, ns, "eth0"), linkIndex(t, ns, "wlan0")
	d.waitEndpoints(t, "at start", ep("10.1.0.2", subflow, eth), ep("10.2.0.2", subflow, wlan), ep("2001:db8:2::2", subflow, wlan))

	table := 27000 + wlan
	const base4, base6 = "0:\tfrom all lookup local\n", "0:\tfrom all lookup local\n"
	want := srcRoutingView{
		rules4: fmt.Sprintf("%s27000:\tfrom 10.2.0.2 lookup %d proto 113\n32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n", base4, table),
		table4: "default via 10.2.0.254 dev wlan0 proto 113 \n10.2.0.0/24 dev wlan0 proto 113 scope link src 10.2.0.2 \n",
		rules6: fmt.Sprintf("%s27000:\tfrom 2001:db8:2::2 lookup %d proto 113\n32766:\tfrom all lookup main\n", base6, table),
		table6: "2001:db8:2::/64 dev wlan0 proto 113 src 2001:db8:2::2 metric 1024 pref medium\n" +
			"default via 2001:db8:2::fe dev wlan0 proto 113 metric 1024 pref medium\n",
	}
	waitSrcRouting(t, ns, table, "installed", want)

	ipBatch(t, ns, "addr del 10.2.0.2/24 dev wlan0", "addr del 2001:db8:2::2/64 dev wlan0")
	d.waitEndpoints(t, "after wlan0's addresses went", ep("10.1.0.2", subflow, eth))
	waitSrcRouting(t, ns, table, "removed", srcRoutingView{
		rules4: base4 + "32766:\tfrom all lookup main\n32767:\tfrom all lookup default\n",
		rules6: base6 + "32766:\tfrom all lookup main\n",
	})
}

// srcRoutingView is what ip shows of the rules and of one table.
type srcRoutingView struct {
	rules4, table4, rules6, table6 string
}

func (v srcRoutingView) String() string {
	return fmt.Sprintf("ip -4 rule:\n%sip -4 route table:\n%sip -6 rule:\n%sip -6 route table:\n%s", v.rules4, v.table4, v.rules6, v.table6)
}

func readSrcRouting(t *testing.T, ns *nstest.NS, table int) srcRoutingView {
	t.Helper()
	show := func(args ...string) string {
		out, stderr, err := ns.Run("ip", args...)
		// IPv4 makes a table with its first route and drops it with its last.
		if err != nil && !strings.Contains(stderr, "FIB table does not exist") {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, stderr)
		}
		return out
	}
	tbl := fmt.Sprint(table)
	return srcRoutingView{
		rules4: show("-4", "rule", "show"),
		table4: show("-4", "route", "show", "table", tbl),
		rules6: show("-6", "rule", "show"),
		table6: show("-6", "route", "show", "table", tbl),
	}
}

func waitSrcRouting(t *testing.T, ns *nstest.NS, table int, what string, want srcRoutingView) {
	t.Helper()
	var got srcRoutingView
	if !waitFor(endpointTimeout, func() bool { got = readSrcRouting(t, ns, table); return got == want }) {
		t.Fatalf("source routing %s: after %v ip shows\n%s\nwant\n%s", what, endpointTimeout, got, want)
	}
}

// TestDaemonNotifiesSystemd plays systemd's side of Type=notify: READY=1
// only once the first reconcile is done (the endpoints are in place when
// it arrives), a STATUS line, RELOADING=1 and READY=1 around a SIGHUP, and
// STOPPING=1 at SIGTERM.
func TestDaemonNotifiesSystemd(t *testing.T) {
	t.Parallel()
	ns := newDaemonNS(t)
	nstest.Veth(t, ns, "wlan0", ns, "wpeer")
	ipBatch(t, ns, "addr add 10.1.0.1/24 dev wlan0")
	sd := listenNotify(t)
	d := newMptcpd(t, ns, wlanPolicy)
	d.env = []string{"NOTIFY_SOCKET=" + sd.path}
	d.start(t)

	sd.expect(t, "READY=1")
	want := ep("10.1.0.1", subflow, linkIndex(t, ns, "wlan0"))
	if got := d.dump(t); !sameEndpoints(got, []mptcp.Endpoint{want}) {
		t.Errorf("endpoints when READY=1 arrived:\n%swant:\n%s", formatEndpoints(got), formatEndpoints([]mptcp.Endpoint{want}))
	}
	sd.expect(t, "STATUS=1 endpoints wanted, 3 links")

	d.signal(t, syscall.SIGHUP)
	sd.expect(t, "RELOADING=1")
	sd.expect(t, "READY=1")

	d.proc.waitIdle(stopTimeout)
	if err := d.proc.terminate(stopTimeout); err != nil {
		t.Fatal(err)
	}
	sd.expect(t, "STOPPING=1")
}

// notifySocket is a stand-in for systemd's notification socket.
type notifySocket struct {
	path string
	msgs chan string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(shmTempDir(t), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	n := &notifySocket{path: path, msgs: make(chan string, 64)}
	go func() {
		defer close(n.msgs)
		buf := make([]byte, 4096)
		for {
			m, err := c.Read(buf)
			if err != nil {
				return
			}
			n.msgs <- string(buf[:m])
		}
	}()
	return n
}

// expect reads notifications until want; anything else before it is an
// error, so the order is checked too.
func (n *notifySocket) expect(t *testing.T, want string) {
	t.Helper()
	select {
	case got, ok := <-n.msgs:
		if !ok {
			t.Fatalf("notification socket closed while waiting for %q", want)
		}
		if got != want {
			t.Fatalf("notification %q, want %q", got, want)
		}
	case <-time.After(startTimeout):
		t.Fatalf("no %q within %v", want, startTimeout)
	}
}
