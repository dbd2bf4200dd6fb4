package integration

// `mptcpctl userspace` on a real connection between two namespaces whose
// path manager is the userspace one: every command acts on the kernel as
// its help says, seen through nl/mptcpdiag and the monitors of both ends.

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// usSide is one end of the userspace test: its namespace, its monitor and
// its view of the connections.
type usSide struct {
	ns   *nstest.NS
	mon  *background
	diag *mptcpdiag.Client
}

// newUSSide makes a namespace with the userspace path manager, before any
// socket exists (the sysctl applies to sockets created afterwards), and
// runs mptcpctl monitor in it: the kernel accepts joins and ADD_ADDRs for
// a userspace-PM connection only while some socket in the namespace
// listens to the events.
func newUSSide(t *testing.T, ctl mptcpTool, name string) *usSide {
	t.Helper()
	s := &usSide{ns: nstest.New(t)}
	s.ns.MustRun("sysctl", "-q", "-w", "net.mptcp.path_manager=userspace")
	s.mon = start(t, "mptcpctl monitor in "+name, ctl.command(context.Background(), s.ns.Name, false, "monitor"))
	var err error
	if s.diag, err = mptcpdiag.Dial(&mptcpdiag.Config{NetNS: s.ns.Handle().FD()}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.diag.Close() })
	return s
}

// waitSubscribed opens and closes MPTCP listeners in the namespace until
// the monitor prints their LISTENER_CREATED event ("[UNKNOWN 15]" in ip
// 6.1's text): then it is subscribed and misses no later event.
func (s *usSide) waitSubscribed(t *testing.T) {
	t.Helper()
	ok := waitFor(monWait, func() bool {
		err := netns.DoFD(s.ns.Handle().FD(), func() error {
			var lc net.ListenConfig
			lc.SetMultipathTCP(true)
			ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
			if err != nil {
				return err
			}
			return ln.Close()
		})
		if err != nil {
			t.Fatalf("sync listener in %s: %v", s.ns, err)
		}
		return waitFor(time.Second, func() bool { return strings.Contains(s.mon.stdout.String(), "[UNKNOWN 15]") || s.mon.exited() })
	})
	if !ok || s.mon.exited() {
		t.Fatalf("%s did not subscribe: %v\n%s%s", s.mon.name, s.mon.err, s.mon.stdout.String(), s.mon.stderr.String())
	}
}

// event waits for the first monitor line matching re and returns its
// submatches.
func (s *usSide) event(t *testing.T, what string, re *regexp.Regexp) []string {
	t.Helper()
	var m []string
	if !waitFor(monWait, func() bool {
		m = re.FindStringSubmatch(s.mon.stdout.String())
		return m != nil || s.mon.exited()
	}) || m == nil {
		t.Fatalf("%s: no %s (%s) in %v:\n%s%s", s.ns, what, re, monWait, s.mon.stdout.String(), s.mon.stderr.String())
	}
	return m
}

// subflows waits until the connection with token has want subflows in the
// kernel's own report and returns them.
func (s *usSide) subflows(t *testing.T, token string, want int) []mptcpdiag.Subflow {
	t.Helper()
	var got []mptcpdiag.Subflow
	ok := waitFor(monWait, func() bool {
		conns, err := s.diag.Connections()
		if err != nil {
			t.Fatalf("%s: Connections: %v", s.ns, err)
		}
		got = nil
		for _, c := range conns {
			if c.Info.Token.String() == token {
				got = c.Subflows
				return len(got) == want && c.Info.TotalSubflows() == want
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("%s: connection %s has subflows %+v, want %d", s.ns, token, got, want)
	}
	return got
}

// mustCtl runs mptcpctl in ns and fails unless it exits with code and
// prints stdout (when not nil) and stderr.
func mustCtl(t *testing.T, ctl mptcpTool, ns *nstest.NS, code int, stdout *string, stderr string, args ...string) {
	t.Helper()
	json := len(args) > 0 && args[0] == "-j"
	if json {
		args = args[1:]
	}
	r := ctl.run(t, ns.Name, json, args...)
	if r.code != code || r.stderr != stderr || (stdout != nil && r.stdout != *stdout) {
		t.Fatalf("mptcpctl -n %s %s: exit %d, stdout %q, stderr %q; want exit %d, stderr %q",
			ns, strings.Join(args, " "), r.code, r.stdout, r.stderr, code, stderr)
	}
}

func ptr(s string) *string { return &s }

func TestUserspaceCLI(t *testing.T) {
	ctl := requireMptcpctl(t)
	if ctl.sub != nil {
		t.Skip("MPTCPCTL=ip: iproute2 has no userspace path manager commands")
	}
	echo := requireMptcpecho(t)
	client, server := newUSSide(t, ctl, "client"), newUSSide(t, ctl, "server")
	c, s := client.ns, server.ns
	nstest.Veth(t, c, "c1", s, "s1")
	nstest.Veth(t, c, "c2", s, "s2")
	c.MustRun("ip", "addr", "add", "10.0.1.2/24", "dev", "c1")
	c.MustRun("ip", "addr", "add", "10.0.2.2/24", "dev", "c2")
	s.MustRun("ip", "addr", "add", "10.0.1.1/24", "dev", "s1")
	s.MustRun("ip", "addr", "add", "10.0.2.1/24", "dev", "s2")
	s.MustRun("ip", "addr", "add", "10.0.3.1/24", "dev", "s2") // only ever announced
	client.waitSubscribed(t)
	server.waitSubscribed(t)
	// A listener on the second link's address too: the join goes there.
	startServer(t, s, echo, "10.0.1.1:5000", "10.0.2.1:5000")
	held := holdConnection(t, c, echo, monWait, 0, "10.0.1.1:5000")

	// The tokens, from the monitors; the client's must be the one the
	// connection itself reports. Subflows need a fully established
	// connection: ESTABLISHED on both ends.
	m := client.event(t, "ESTABLISHED", regexp.MustCompile(`\[   ESTABLISHED\] token=([0-9a-f]{8}) remid=0 locid=0 saddr4=10\.0\.1\.2 daddr4=10\.0\.1\.1 sport=(\d+) dport=5000\n`))
	tok, sport := m[1], m[2]
	if want := fmt.Sprintf("connected %s 10.0.1.2:%s 10.0.1.1:5000\n", tok, sport); !strings.Contains(held.b.stdout.String(), want) {
		t.Fatalf("client monitor's token %s is not the connection's:\n%s", tok, held.b.stdout.String())
	}
	stok := server.event(t, "ESTABLISHED", regexp.MustCompile(`\[   ESTABLISHED\] token=([0-9a-f]{8}) remid=0 locid=0 saddr4=10\.0\.1\.1 daddr4=10\.0\.1\.2 sport=5000 dport=`+sport+` flags=2\n`))[1]
	client.subflows(t, tok, 1)

	// subflow create over the second link: the kernel opens it, both ends
	// see it, and the path manager now holds the local address.
	mustCtl(t, ctl, c, 0, ptr(""), "", "userspace", "subflow", "create", "token", tok, "local", "10.0.2.2", "id", "1", "dev", "c2",
		"remote", "10.0.2.1", "port", "5000")
	sfRe := `token=%s remid=1 locid=1 saddr4=10\.0\.2\.2 daddr4=10\.0\.2\.1 sport=(\d+) dport=5000 backup=%d`
	joinPort := client.event(t, "SF_ESTABLISHED", regexp.MustCompile(`\[SF_ESTABLISHED\] `+fmt.Sprintf(sfRe, tok, 0)+` ifindex=\d+\n`))[1]
	var join mptcpdiag.Subflow
	for _, sf := range client.subflows(t, tok, 2) {
		if sf.Local.Addr().Unmap() == netip.MustParseAddr("10.0.2.2") {
			join = sf
		}
	}
	local := netip.MustParseAddrPort("10.0.2.2:" + joinPort)
	if join.Local != local || join.Remote != netip.MustParseAddrPort("10.0.2.1:5000") || join.LocalID != 1 || join.Backup() {
		t.Fatalf("the join is %+v, want %v -> 10.0.2.1:5000, local id 1, not backup", join, local)
	}
	server.subflows(t, stok, 2)
	mustCtl(t, ctl, c, 0, ptr("10.0.2.2 id 1 subflow dev c2 \n"), "", "userspace", "endpoints", "token", tok)
	mustCtl(t, ctl, c, 0, ptr(`[{"address":"10.0.2.2","id":1,"subflow":true,"dev":"c2"}]`+"\n"), "", "-j", "u", "e", "t", "0x"+tok)

	// subflow backup: the client marks its subflow and tells the peer
	// (MP_PRIO), whose kernel reports SUB_PRIORITY; the end that asked
	// reports nothing.
	mustCtl(t, ctl, c, 0, ptr(""), "", "userspace", "subflow", "backup", "token", tok, "local", "10.0.2.2", "remote", "10.0.2.1", "port", "5000")
	server.event(t, "SF_PRIO", regexp.MustCompile(`\[       SF_PRIO\] token=`+stok+` remid=1 locid=1 saddr4=10\.0\.2\.1 daddr4=10\.0\.2\.2 sport=5000 dport=`+joinPort+` backup=1\n`))
	if !waitFor(monWait, func() bool {
		for _, sf := range client.subflows(t, tok, 2) {
			if sf.Local == local && sf.Backup() {
				return true
			}
		}
		return false
	}) {
		t.Fatalf("the join is not a backup subflow after subflow backup")
	}

	// subflow destroy closes it; a second time the kernel finds nothing.
	destroy := []string{"userspace", "subflow", "destroy", "token", tok, "local", "10.0.2.2", "port", joinPort, "remote", "10.0.2.1", "port", "5000"}
	mustCtl(t, ctl, c, 0, ptr(""), "", destroy...)
	client.event(t, "SF_CLOSED", regexp.MustCompile(`\[     SF_CLOSED\] `+fmt.Sprintf(sfRe, tok, 0)))
	client.subflows(t, tok, 1)
	server.subflows(t, stok, 1)
	mustCtl(t, ctl, c, 2, nil, "Error: subflow not found.\n", destroy...)
	mustCtl(t, ctl, c, 2, nil, "Error: invalid token.\n", "userspace", "remove", "id", "1", "token", "0")

	// The server announces an address and withdraws it: the client's
	// kernel reports both.
	mustCtl(t, ctl, s, 0, ptr(""), "", "userspace", "announce", "10.0.3.1", "id", "7", "token", stok)
	client.event(t, "ANNOUNCED", regexp.MustCompile(`\[     ANNOUNCED\] token=`+tok+` remid=7 daddr4=10\.0\.3\.1 `))
	mustCtl(t, ctl, s, 0, ptr(""), "", "userspace", "remove", "id", "7", "token", stok)
	client.event(t, "REMOVED", regexp.MustCompile(`\[       REMOVED\] token=`+tok+` remid=7\n`))
	mustCtl(t, ctl, s, 2, nil, "Error: address with id 7 not found.\n", "userspace", "remove", "id", "7", "token", stok)

	// Data still flows over the initial subflow.
	held.release(t, monWait)
}
