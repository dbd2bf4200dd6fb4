package intercept

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// ioTimeout bounds every dial and accept; nothing here waits on a network
// beyond one veth.
const ioTimeout = 3 * time.Second

type outcome int

const (
	redirected outcome = iota // accepted by the relay listener
	reachedOwn                // accepted by the gateway's own listener
	notReached                // refused or unreachable: nothing accepted it
)

// dialCase is a connection from the client namespace and where it must end.
type dialCase struct {
	name  string
	src   string // client's source address; "" lets the kernel pick
	mptcp bool
	dst   string
	want  outcome
}

// TestKernelRedirect runs a gateway namespace with the rules installed and a
// client namespace behind it, and dials from the client.
func TestKernelRedirect(t *testing.T) {
	gw, cl := nstest.New(t), nstest.New(t)
	nstest.Veth(t, gw, "lan0", cl, "eth0")
	gw.MustRun("ip", "addr", "add", "192.168.7.1/24", "dev", "lan0")
	gw.MustRun("ip", "addr", "add", "fd00:7::1/64", "dev", "lan0", "nodad")
	// A forwarding gateway answers what it cannot route with ICMP at
	// once; one that does not forward drops it, and dials time out.
	gw.MustRun("sysctl", "-q", "-w", "net.ipv4.conf.all.forwarding=1")
	// .2 and ::2 are the client's sources; .3 and ::3, deprecated so that
	// only a dial bound to them uses them, are not in Sources.
	cl.MustRun("ip", "addr", "add", "192.168.7.2/24", "dev", "eth0")
	cl.MustRun("ip", "addr", "add", "fd00:7::2/64", "dev", "eth0", "nodad")
	cl.MustRun("ip", "addr", "add", "192.168.7.3/24", "dev", "eth0", "preferred_lft", "0")
	cl.MustRun("ip", "addr", "add", "fd00:7::3/64", "dev", "eth0", "nodad", "preferred_lft", "0")
	cl.MustRun("ip", "route", "add", "default", "via", "192.168.7.1")
	cl.MustRun("ip", "-6", "route", "add", "default", "via", "fd00:7::1")
	gwh, clh := gw.Handle(), cl.Handle()

	hostBefore := tableNames(t, nil)
	relay := listen(t, gwh, "[::]:7070")
	own := listen(t, gwh, "[::]:8080")
	cfg := Config{
		Interfaces: []string{"lan0"},
		Sources:    prefixes("192.168.7.2/32", "fd00:7::2/128"),
		Exclude:    prefixes("198.51.100.0/24", "240.0.0.0/4", "2001:db8:ff::/48"),
		Port:       7070,
		NetNS:      gwh.FD(),
	}
	// The first table stands for one left by a crashed run.
	if _, err := Install(cfg); err != nil {
		t.Fatal(err)
	}
	rules, err := Install(cfg)
	if err != nil {
		t.Fatalf("installing over a stale table: %v", err)
	}
	if got := tableNames(t, gwh); !slices.Equal(got, []string{DefaultTable}) {
		t.Fatalf("tables in the gateway: %q, want only %q", got, DefaultTable)
	}
	checkInstalled(t, gwh, build(cfg))

	for _, c := range []dialCase{
		{name: "IPv4", dst: "203.0.113.5:80", want: redirected},
		{name: "IPv6", dst: "[2001:db8::5]:443", want: redirected},
		{name: "MPTCP client falls back", mptcp: true, dst: "203.0.113.6:80", want: redirected},
		{name: "gateway's IPv4 address", dst: "192.168.7.1:8080", want: reachedOwn},
		{name: "gateway's IPv6 address", dst: "[fd00:7::1]:8080", want: reachedOwn},
		{name: "gateway's closed port", dst: "192.168.7.1:9", want: notReached},
		{name: "excluded IPv4", dst: "198.51.100.7:80", want: notReached},
		{name: "excluded up to the last IPv4 address", dst: "250.1.2.3:80", want: notReached},
		{name: "excluded IPv6", dst: "[2001:db8:ff::7]:80", want: notReached},
		{name: "IPv4 source not in Sources", src: "192.168.7.3", dst: "203.0.113.5:80", want: notReached},
		{name: "IPv6 source not in Sources", src: "fd00:7::3", dst: "[2001:db8::5]:443", want: notReached},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, clh, relay, own) })
	}

	if err := rules.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := rules.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if got := tableNames(t, gwh); len(got) != 0 {
		t.Errorf("tables in the gateway after Remove: %q", got)
	}
	for _, c := range []dialCase{
		{name: "IPv4 after Remove", dst: "203.0.113.5:80", want: notReached},
		{name: "IPv6 after Remove", dst: "[2001:db8::5]:443", want: notReached},
	} {
		t.Run(c.name, func(t *testing.T) { c.check(t, clh, relay, own) })
	}
	if got := tableNames(t, nil); !slices.Equal(got, hostBefore) {
		t.Errorf("inet tables of the host namespace changed: %q, was %q", got, hostBefore)
	}
}

func (c dialCase) check(t *testing.T, client *netns.Handle, relay, own <-chan *net.TCPConn) {
	d := net.Dialer{Timeout: ioTimeout}
	d.SetMultipathTCP(c.mptcp)
	if c.src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(c.src)}
	}
	var conn net.Conn
	err := client.Do(func() (err error) {
		conn, err = d.Dial("tcp", c.dst)
		return err
	})
	if c.want == notReached {
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s succeeded, want it refused or unreachable", c.dst)
		}
		if c.dst == "192.168.7.1:9" && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("dial %s: %v, want connection refused", c.dst, err)
		}
		expectNone(t, relay, "relay")
		return
	}
	if err != nil {
		t.Fatalf("dial %s: %v", c.dst, err)
	}
	defer conn.Close()
	from, other := relay, own
	if c.want == reachedOwn {
		from, other = own, relay
	}
	var got *net.TCPConn
	select {
	case got = <-from:
	case <-time.After(ioTimeout):
		t.Fatalf("dial %s: nothing accepted it where expected", c.dst)
	}
	defer got.Close()
	expectNone(t, other, "other listener")
	// The redirect may give the connection a new source port when its
	// reply tuple would clash with an earlier one's, so the connection
	// is recognised by what it carries, not by its port.
	if want, remote := addrPort(conn.LocalAddr()).Addr(), addrPort(got.RemoteAddr()).Addr(); remote != want {
		t.Fatalf("accepted a connection from %s, want one from %s", remote, want)
	}
	token := []byte(c.name)
	if _, err := conn.Write(token); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(token))
	got.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(got, buf); err != nil || string(buf) != c.name {
		t.Fatalf("accepted connection carried %q (%v), want %q: not the one dialled", buf, err, c.name)
	}
	dst, err := OriginalDst(got)
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParseAddrPort(c.dst); dst != want {
		t.Errorf("OriginalDst = %s, want %s", dst, want)
	}
}

func expectNone(t *testing.T, ch <-chan *net.TCPConn, what string) {
	t.Helper()
	select {
	case c := <-ch:
		c.Close()
		t.Errorf("%s accepted a connection from %s", what, c.RemoteAddr())
	default:
	}
}

// listen accepts plain TCP on addr inside the namespace h until the test
// ends, handing accepted connections over.
func listen(t *testing.T, h *netns.Handle, addr string) <-chan *net.TCPConn {
	t.Helper()
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *net.TCPConn, 16)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c.(*net.TCPConn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
	})
	return ch
}

func addrPort(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// tableNames lists the inet tables of the namespace h (nil: this one).
func tableNames(t *testing.T, h *netns.Handle) []string {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(h.FD()))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	slices.Sort(names)
	return names
}

// checkInstalled reads the table back and compares it with what was sent:
// the kernel keeps rules and set elements as given.
func checkInstalled(t *testing.T, h *netns.Handle, want ruleset) {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(h.FD()))
	if err != nil {
		t.Fatal(err)
	}
	for _, ch := range want.chains {
		rules, err := c.GetRules(want.table, ch)
		if err != nil {
			t.Fatalf("rules of chain %s: %v", ch.Name, err)
		}
		var got, wantExprs [][]expr.Any
		for _, r := range rules {
			got = append(got, r.Exprs)
		}
		for _, r := range want.rules {
			if r.Chain == ch {
				wantExprs = append(wantExprs, r.Exprs)
			}
		}
		// The kernel names sets in lookups; set ids exist only in a batch.
		if diff := cmp.Diff(wantExprs, got, cmpopts.IgnoreFields(expr.Lookup{}, "SetID")); diff != "" {
			t.Errorf("chain %s in the kernel (-sent +read back):\n%s", ch.Name, diff)
		}
	}
	for _, s := range want.sets {
		ks, err := c.GetSetByName(want.table, s.Name)
		if err != nil {
			t.Fatalf("set %s: %v", s.Name, err)
		}
		elems, err := c.GetSetElements(ks)
		if err != nil {
			t.Fatalf("elements of set %s: %v", s.Name, err)
		}
		if diff := cmp.Diff(setKeys(s.elems), setKeys(elems)); diff != "" {
			t.Errorf("set %s in the kernel (-sent +read back):\n%s", s.Name, diff)
		}
	}
}

// setKeys is a set's elements as hex keys, "end" marking interval ends, in
// key order.
func setKeys(elems []nftables.SetElement) []string {
	var s []string
	for _, e := range elems {
		k := hex.EncodeToString(e.Key)
		if e.IntervalEnd {
			k += " end"
		}
		s = append(s, k)
	}
	slices.Sort(s)
	return s
}
