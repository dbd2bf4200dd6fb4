package integration

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// The IPv6-only relay topology, in ULA and documentation prefixes:
//
//	client --lan0-- gateway ==isp1,isp2== relay --wan0-- destination
//
// Neither the gateway nor the relay forwards: the client reaches the
// destination only through the relay.
var (
	r6Client   = netip.MustParseAddr("fd00:1::2")
	r6LAN      = netip.MustParseAddr("fd00:1::1") // the gateway's LAN address
	r6GWISP1   = netip.MustParseAddr("fd00:11::1")
	r6RelayISP = netip.MustParseAddr("fd00:11::2") // where the relay listens
	r6GWISP2   = netip.MustParseAddr("fd00:12::1")
	r6RelayTwo = netip.MustParseAddr("fd00:12::2")
	r6RelayWAN = netip.MustParseAddr("2001:db8:d::1")
	r6Dest     = netip.MustParseAddr("2001:db8:d::2")
)

const (
	r6EchoPort = 5001 // the destination: greets with the peer's address, then echoes
	r6TrapPort = 5009 // on the relay's host: must never be dialed
	r6Timeout  = 20 * time.Second
)

// relay6Net is the topology with both roles of mptcpd-relay running.
type relay6Net struct {
	client, gw *netns.Handle
	relayer    *background
	trap       *net.TCPListener // [::]:r6TrapPort in the relay's namespace
}

// TestRelayIPv6 runs the relay's two roles end to end over IPv6 only,
// which the IPv4 testbed of relay_test.go cannot: the REDIRECT rule's
// IPv6 half and IP6T_SO_ORIGINAL_DST on the gateway, SOCKS5 with an IPv6
// address (ATYP 4), an MPTCP gateway-relay leg that joins a second
// subflow over the other ISP link, and the relay's destination policy,
// which refuses its own ULA network and ::1 unless allowed.
func TestRelayIPv6(t *testing.T) {
	bin := requireBinary(t, mptcpdRelayBin, mptcpdRelayErr)
	n := newRelay6Net(t, bin)
	dest := netip.AddrPortFrom(r6Dest, r6EchoPort)

	t.Run("intercepted", func(t *testing.T) {
		c := n.dial(t, dest)
		if from := exchange(t, c); from.Addr() != r6RelayWAN {
			t.Errorf("the destination saw the connection from %s, want the relay's %s", from, r6RelayWAN)
		}
	})

	t.Run("socks", func(t *testing.T) {
		c := n.socks(t, dest)
		if from := exchange(t, c); from.Addr() != r6RelayWAN {
			t.Errorf("the destination saw the connection from %s, want the relay's %s", from, r6RelayWAN)
		}
	})

	t.Run("two-subflows", func(t *testing.T) { n.checkSubflows(t, dest) })

	t.Run("refused", func(t *testing.T) {
		socks := func(t *testing.T, a netip.AddrPort) (*net.TCPConn, error) { return n.socks(t, a), nil }
		for _, tc := range []struct {
			name string
			dial func(*testing.T, netip.AddrPort) (*net.TCPConn, error)
			to   netip.AddrPort
		}{
			{"intercepted to the relay's own ULA", n.tryDial, netip.AddrPortFrom(r6RelayISP, r6TrapPort)},
			{"SOCKS5 to the relay's ::1", socks, netip.AddrPortFrom(netip.IPv6Loopback(), r6TrapPort)},
		} {
			c, err := tc.dial(t, tc.to)
			switch {
			case errors.Is(err, syscall.ECONNRESET):
				// The gateway took the handshake, asked the relay and
				// reset before this connect returned: the reset came first.
			case err != nil:
				t.Fatalf("%s: client dial: %v", tc.name, err)
			default:
				_, _ = c.Write([]byte("ping\n"))
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Read(make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("%s: client read %v, want a reset", tc.name, err)
				}
				c.Close()
			}
			// The relay logs after it has reset: wait for the line.
			refusal := fmt.Sprintf(`reason=policy err="destination %s:`, tc.to.Addr())
			if !waitFor(5*time.Second, func() bool { return strings.Contains(n.relayer.stderr.String(), refusal) }) {
				t.Errorf("%s: the relay logged no policy refusal of %s", tc.name, tc.to.Addr())
			}
		}
		// A connection dialed to the trap would wait in its queue.
		_ = n.trap.SetDeadline(time.Now().Add(100 * time.Millisecond))
		if c, err := n.trap.Accept(); err == nil {
			c.Close()
			t.Errorf("the relay dialed %s, its own host", c.LocalAddr())
		}
	})
}

func newRelay6Net(t *testing.T, bin string) *relay6Net {
	t.Helper()
	client, gw, rel, dst := nstest.New(t), nstest.New(t), nstest.New(t), nstest.New(t)
	nstest.Veth(t, client, "eth0", gw, "lan0")
	nstest.Veth(t, gw, "isp1", rel, "isp1")
	nstest.Veth(t, gw, "isp2", rel, "isp2")
	nstest.Veth(t, rel, "wan0", dst, "eth0")
	addr := func(ns *nstest.NS, dev string, a netip.Addr) {
		// nodad: a tentative address cannot be bound, nor REDIRECTed to.
		ns.MustRun("ip", "-6", "addr", "add", netip.PrefixFrom(a, 64).String(), "dev", dev, "nodad")
	}
	addr(client, "eth0", r6Client)
	addr(gw, "lan0", r6LAN)
	addr(gw, "isp1", r6GWISP1)
	addr(gw, "isp2", r6GWISP2)
	addr(rel, "isp1", r6RelayISP)
	addr(rel, "isp2", r6RelayTwo)
	addr(rel, "wan0", r6RelayWAN)
	addr(dst, "eth0", r6Dest)
	client.MustRun("ip", "-6", "route", "add", "default", "via", r6LAN.String())
	dst.MustRun("ip", "-6", "route", "add", "default", "via", r6RelayWAN.String())
	// The relay's address is on isp1's network. The subflow bound to isp2
	// reaches it by this route; unbound sockets keep the connected one,
	// whose metric (256) is lower.
	gw.MustRun("ip", "-6", "route", "add", netip.PrefixFrom(r6RelayISP, 64).Masked().String(), "via", r6RelayTwo.String(), "dev", "isp2", "metric", "1024")
	for _, ns := range []*nstest.NS{gw, rel} {
		ns.MustRun("sysctl", "-qw", "net.ipv6.conf.all.forwarding=0")
		ns.MustRun("ip", "mptcp", "limits", "set", "subflows", "2", "add_addr_accepted", "2")
	}
	gw.MustRun("ip", "mptcp", "endpoint", "add", r6GWISP2.String(), "dev", "isp2", "subflow")

	n := &relay6Net{client: client.Handle(), gw: gw.Handle()}
	serveGreetEcho(t, dst.Handle(), netip.AddrPortFrom(r6Dest, r6EchoPort))
	if err := rel.Handle().Do(func() error {
		ln, err := net.ListenTCP("tcp6", &net.TCPAddr{IP: net.IPv6unspecified, Port: r6TrapPort})
		n.trap = ln
		return err
	}); err != nil {
		t.Fatalf("trap listener: %v", err)
	}
	t.Cleanup(func() { n.trap.Close() })

	key, noConf := relayKeyFiles(t)
	relayAddr := netip.AddrPortFrom(r6RelayISP, relayPort).String()
	ctx := context.Background()
	n.relayer = startUntil(t, "relay", rel.Command(ctx, bin, "--role=relay", "--listen="+relayAddr, "--key-file="+key,
		"--allow-destinations=2001:db8:d::/64", "--config", noConf, "--log=stderr", "-d"), "listening", 1)
	startUntil(t, "gateway", gw.Command(ctx, bin, "--role=gateway", "--relay="+relayAddr, "--key-file="+key,
		"--intercept=lan0", "--transparent=[::]:7442", "--socks="+netip.AddrPortFrom(r6LAN, 1080).String(),
		"--config", noConf, "--log=stderr", "-d"), "listening", 2)
	return n
}

// serveGreetEcho runs a plain TCP server at a in h: it writes the peer's
// address and a newline, then echoes.
func serveGreetEcho(t *testing.T, h *netns.Handle, a netip.AddrPort) {
	t.Helper()
	var ln net.Listener
	if err := h.Do(func() (err error) {
		ln, err = net.Listen("tcp6", a.String())
		return err
	}); err != nil {
		t.Fatalf("destination listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(r6Timeout))
				fmt.Fprintf(c, "%s\n", c.RemoteAddr())
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// dial connects from the client, as plain TCP, to a: the gateway
// intercepts it.
func (n *relay6Net) dial(t *testing.T, a netip.AddrPort) *net.TCPConn {
	t.Helper()
	c, err := n.tryDial(t, a)
	if err != nil {
		t.Fatalf("client dial %s: %v", a, err)
	}
	return c
}

// tryDial is dial that returns the dial's error.
func (n *relay6Net) tryDial(t *testing.T, a netip.AddrPort) (*net.TCPConn, error) {
	t.Helper()
	d := net.Dialer{Timeout: r6Timeout}
	d.SetMultipathTCP(false) // a LAN client knows nothing of MPTCP
	var c net.Conn
	if err := n.client.Do(func() (err error) {
		c, err = d.Dial("tcp6", a.String())
		return err
	}); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(r6Timeout))
	return c.(*net.TCPConn), nil
}

// socks connects from the client to a through the gateway's SOCKS5
// listener, with a CONNECT of an IPv6 address (ATYP 4).
func (n *relay6Net) socks(t *testing.T, a netip.AddrPort) *net.TCPConn {
	t.Helper()
	c := n.dial(t, netip.AddrPortFrom(r6LAN, 1080))
	req := append([]byte{5, 1, 0, 5, 1, 0, 4}, a.Addr().AsSlice()...) // no auth; CONNECT
	req = binary.BigEndian.AppendUint16(req, a.Port())
	if _, err := c.Write(req); err != nil {
		t.Fatalf("SOCKS5 request: %v", err)
	}
	// The method reply, then the CONNECT reply, whose bound address is
	// the gateway's end of this IPv6 connection.
	reply := make([]byte, 2+4+16+2)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("SOCKS5 reply: %v", err)
	}
	if reply[0] != 5 || reply[1] != 0 || reply[2] != 5 || reply[3] != 0 || reply[5] != 4 {
		t.Fatalf("SOCKS5 reply % x: want method 0, then succeeded with an IPv6 address", reply)
	}
	return c
}

// exchange reads the destination's greeting, checks that a line comes
// back echoed, and returns the address the destination saw.
func exchange(t *testing.T, c *net.TCPConn) netip.AddrPort {
	t.Helper()
	r := bufio.NewReader(c)
	greeting, err := r.ReadString('\n')
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	from, err := netip.ParseAddrPort(strings.TrimSpace(greeting))
	if err != nil {
		t.Fatalf("greeting %q: %v", greeting, err)
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if echo, err := r.ReadString('\n'); err != nil || echo != "ping\n" {
		t.Fatalf("echo: %q, %v", echo, err)
	}
	return from
}

// checkSubflows runs an echo transfer through the relay and, while it
// runs, looks on the gateway for the MPTCP connection to the relay that
// carries it: it must have one subflow from each ISP address.
func (n *relay6Net) checkSubflows(t *testing.T, dest netip.AddrPort) {
	c := n.dial(t, dest)
	if _, err := bufio.NewReader(io.LimitReader(c, 64)).ReadString('\n'); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	stop := make(chan struct{})
	sent := make(chan int64, 1)
	go func() {
		// Paced at 16 MB/s: flat out, on a busy 2-core machine, this
		// kernel's MPTCP receiver (6.18) can drop data at the connection
		// level and stall the echo for tens of seconds. What is checked
		// here is the join, not the throughput.
		buf := make([]byte, 16<<10)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		var total int64
		defer func() { sent <- total; _ = c.CloseWrite() }()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			k, err := c.Write(buf)
			total += int64(k)
			if err != nil {
				return
			}
		}
	}()
	echoed := make(chan int64, 1)
	go func() {
		k, _ := io.Copy(io.Discard, c)
		echoed <- k
	}()

	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: n.gw.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer diag.Close()
	relayAddr := netip.AddrPortFrom(r6RelayISP, relayPort)
	var conn *mptcpdiag.Connection
	ok := waitFor(10*time.Second, func() bool {
		conns, err := diag.Connections()
		if err != nil {
			t.Fatalf("gateway MPTCP connections: %v", err)
		}
		conn = nil
		for i, cn := range conns {
			if cn.Remote == relayAddr && cn.Info.BytesSent > 1<<20 && cn.Info.Flags&mptcpdiag.InfoFallback == 0 {
				conn = &conns[i]
			}
		}
		if conn == nil || len(conn.Subflows) != 2 {
			return false
		}
		locals := []netip.Addr{conn.Subflows[0].Local.Addr(), conn.Subflows[1].Local.Addr()}
		return conn.Subflows[1].State == mptcpdiag.StateEstablished &&
			(locals[0] == r6GWISP1 && locals[1] == r6GWISP2 || locals[0] == r6GWISP2 && locals[1] == r6GWISP1)
	})
	close(stop)
	if !ok {
		t.Errorf("no MPTCP connection to %s carrying the transfer with subflows from %s and %s; last seen: %+v", relayAddr, r6GWISP1, r6GWISP2, conn)
	} else {
		for _, sf := range conn.Subflows {
			t.Logf("subflow %s -> %s: %d bytes sent", sf.Local, sf.Remote, sf.TCP.BytesSent)
		}
	}
	if s, e := <-sent, <-echoed; s != e {
		t.Errorf("sent %d bytes, %d came back", s, e)
	}
}
