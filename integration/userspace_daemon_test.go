package integration

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// TestDaemonUserspaceSSPI runs mptcpd with the sspi plugin in the
// client namespace (path manager switched to userspace by the daemon):
// a connection over eth0 gets exactly one more subflow, from wlan0,
// counted from the kernel's own list of subflows.
func TestDaemonUserspaceSSPI(t *testing.T) {
	t.Parallel()
	echo := requireMptcpecho(t)
	top := newDaemonTopology(t)
	startMptcpd(t, top.client, "match name=eth*,wlan*\n    flags subflow\n", "--path-manager=sspi", "--set-path-manager")
	if name, err := mptcp.PathManager(&mptcp.Config{NetNS: top.client.Handle().FD()}); err != nil || name != "userspace" {
		t.Fatalf("path manager after start: %q, %v; want userspace", name, err)
	}
	startServer(t, top.server, echo, "10.0.1.1:5000")
	held := holdConnection(t, top.client, echo, connWait, 1, "10.0.1.1:5000")
	defer held.release(t, connWait)

	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: top.client.Handle().FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer diag.Close()
	subflows := func() []string {
		conns, err := diag.Connections()
		if err != nil {
			t.Fatalf("mptcp_diag: %v", err)
		}
		var got []string
		for _, c := range conns {
			if c.Listening() {
				continue
			}
			for _, s := range c.Subflows {
				got = append(got, s.Local.Addr().String()+" -> "+s.Remote.String())
			}
		}
		return got
	}
	want := []string{"10.0.1.2 -> 10.0.1.1:5000", "10.0.2.2 -> 10.0.1.1:5000"}
	var got []string
	if !waitFor(endpointTimeout, func() bool { got = subflows(); return slices.Equal(got, want) }) {
		t.Fatalf("subflows %q, want %q: one from eth0 and one from wlan0", got, want)
	}
	// Exactly those: nothing more comes.
	time.Sleep(eventQuiet)
	if got := subflows(); !slices.Equal(got, want) {
		t.Errorf("subflows a while later: %q, want %q", got, want)
	}
}

// usLinks are the client's links of the userspace tests, in order:
// link i joins the client's usLinks[i] (10.0.i+1.2) to the server's
// s(i+1) (10.0.i+1.1).
var usLinks = []string{"eth0", "wlan0", "wwan0"}

// newUSTopology is a daemonTopology with n (2 or 3) links; sysctls are
// set in both namespaces before the links are made. Deleting an IPv4
// address keeps the others of its prefix (promote_secondaries).
func newUSTopology(tb testing.TB, n int, sysctls ...string) daemonTopology {
	tb.Helper()
	top := daemonTopology{client: nstest.New(tb), server: nstest.New(tb)}
	for _, ns := range []*nstest.NS{top.client, top.server} {
		// As newDaemonNS: addresses are deleted in any order.
		ns.MustRun("sysctl", append([]string{"-q", "-w", "net.ipv4.conf.all.promote_secondaries=1"}, sysctls...)...)
	}
	var client, server []string
	for i, name := range usLinks[:n] {
		peer := fmt.Sprintf("s%d", i+1)
		nstest.Veth(tb, top.client, name, top.server, peer)
		client = append(client, fmt.Sprintf("addr add 10.0.%d.2/24 dev %s", i+1, name))
		server = append(server, fmt.Sprintf("addr add 10.0.%d.1/24 dev %s", i+1, peer))
	}
	ipBatch(tb, top.client, client...)
	ipBatch(tb, top.server, server...)
	return top
}

// linkSubflows reads a namespace's MPTCP subflows from the kernel
// (mptcp_diag) and names each by the link that holds its local address,
// as the namespace's address list says: "wlan0 -> 10.0.1.1:5000",
// " backup" added for a backup subflow. Only established subflows count:
// one being closed lingers in FIN_WAIT1 for a while when its address
// went. Listeners are left out; the result is sorted.
type linkSubflows struct {
	ns   *nstest.NS
	diag *mptcpdiag.Client
}

func newLinkSubflows(t *testing.T, ns *nstest.NS) *linkSubflows {
	t.Helper()
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: ns.Handle().FD()})
	if err != nil {
		t.Fatalf("mptcp_diag in %s: %v", ns, err)
	}
	t.Cleanup(func() { diag.Close() })
	return &linkSubflows{ns: ns, diag: diag}
}

func (l *linkSubflows) read(t *testing.T) []string {
	t.Helper()
	links := addrLinks(t, l.ns)
	conns, err := l.diag.Connections()
	if err != nil {
		t.Fatalf("mptcp_diag in %s: %v", l.ns, err)
	}
	var got []string
	for _, c := range conns {
		if c.Listening() {
			continue
		}
		for _, s := range c.Subflows {
			if s.State != mptcpdiag.StateEstablished {
				continue // closing: it carries the connection no more
			}
			name, ok := links[s.Local.Addr().Unmap()]
			if !ok {
				name = "?" + s.Local.Addr().String()
			}
			sf := name + " -> " + s.Remote.String()
			if s.Backup() {
				sf += " backup"
			}
			got = append(got, sf)
		}
	}
	slices.Sort(got)
	return got
}

// wait waits until the subflows are exactly want (sorted), then checks
// that nothing changes for eventQuiet: a plugin that opens one subflow
// too many is caught too.
func (l *linkSubflows) wait(t *testing.T, what string, want ...string) {
	t.Helper()
	want = slices.Sorted(slices.Values(want))
	var got []string
	if !waitFor(endpointTimeout, func() bool { got = l.read(t); return slices.Equal(got, want) }) {
		t.Fatalf("%s: subflows in %s after %v:\n\t%s\nwant:\n\t%s", what, l.ns, endpointTimeout,
			strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
	time.Sleep(eventQuiet)
	if got := l.read(t); !slices.Equal(got, want) {
		t.Fatalf("%s: subflows in %s a while later:\n\t%s\nwant:\n\t%s", what, l.ns,
			strings.Join(got, "\n\t"), strings.Join(want, "\n\t"))
	}
}

// addrLinks maps each address of ns to the name of its link.
func addrLinks(t *testing.T, ns *nstest.NS) map[netip.Addr]string {
	t.Helper()
	m := map[netip.Addr]string{}
	// "3: eth0    inet 10.0.1.2/24 brd 10.0.1.255 scope global eth0\ ..."
	for _, line := range strings.Split(ns.MustRun("ip", "-o", "addr", "show"), "\n") {
		f := strings.Fields(line)
		if len(f) < 4 {
			continue
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil {
			t.Fatalf("%s: cannot parse ip -o addr line %q", ns, line)
		}
		m[p.Addr()] = strings.SplitN(f[1], "@", 2)[0]
	}
	return m
}
