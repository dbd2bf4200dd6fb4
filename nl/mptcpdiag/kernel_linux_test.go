package mptcpdiag

import (
	"context"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

// kernelTimeout bounds each wait of the kernel tests.
const kernelTimeout = 10 * time.Second

// twoPathPair is a client and a server namespace joined by two veth links:
//
//	client c0 10.1.1.2/24 <-> s0 10.1.1.1/24 server
//	client c1 10.1.2.2/24 <-> s1 10.1.2.1/24 server
//
// with a subflow endpoint on c1 in the client (dev c1), so that every
// connection to 10.1.1.1 gets a second subflow 10.1.2.2 -> 10.1.1.1 over
// c1; the server answers it over s1 (its route to 10.1.2.0/24).
type twoPathPair struct {
	client, server *nstest.NS
	clientH        *netns.Handle
	serverH        *netns.Handle
	c1Index        int // ifindex of c1 in the client
}

var (
	serverAddr  = netip.MustParseAddr("10.1.1.1")
	clientAddr0 = netip.MustParseAddr("10.1.1.2")
	clientAddr1 = netip.MustParseAddr("10.1.2.2")
)

func newTwoPathPair(t *testing.T) *twoPathPair {
	t.Helper()
	p := &twoPathPair{client: nstest.New(t), server: nstest.New(t)}
	nstest.Veth(t, p.client, "c0", p.server, "s0")
	nstest.Veth(t, p.client, "c1", p.server, "s1")
	p.client.MustRun("ip", "addr", "add", "10.1.1.2/24", "dev", "c0")
	p.client.MustRun("ip", "addr", "add", "10.1.2.2/24", "dev", "c1")
	p.server.MustRun("ip", "addr", "add", "10.1.1.1/24", "dev", "s0")
	p.server.MustRun("ip", "addr", "add", "10.1.2.1/24", "dev", "s1")
	p.clientH, p.serverH = p.client.Handle(), p.server.Handle()

	c1, err := netIfIndex(p.clientH, "c1")
	if err != nil {
		t.Fatal(err)
	}
	p.c1Index = c1
	pm, err := mptcp.Dial(&mptcp.Config{NetNS: p.clientH.FD()})
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	if err := pm.AddEndpoint(mptcp.Endpoint{Addr: clientAddr1, Flags: mptcp.FlagSubflow, IfIndex: c1}); err != nil {
		t.Fatalf("add the client's subflow endpoint: %v", err)
	}
	return p
}

// netIfIndex is the index of link name inside ns.
func netIfIndex(ns *netns.Handle, name string) (int, error) {
	var idx int
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = ifi.Index
		return nil
	})
	return idx, err
}

// connect opens an MPTCP connection from the client to the server's
// 10.1.1.1 and returns both ends; they close at cleanup.
func (p *twoPathPair) connect(t *testing.T) (client, server net.Conn) {
	t.Helper()
	var ln net.Listener
	err := p.serverH.Do(func() (err error) {
		var lc net.ListenConfig
		lc.SetMultipathTCP(true)
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(serverAddr, 0).String())
		return err
	})
	if err != nil {
		t.Fatalf("listen in the server namespace: %v", err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	err = p.clientH.Do(func() (err error) {
		d := net.Dialer{Timeout: kernelTimeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(clientAddr0, 0))}
		d.SetMultipathTCP(true)
		client, err = d.Dial("tcp4", ln.Addr().String())
		return err
	})
	if err != nil {
		t.Fatalf("dial in the client namespace: %v", err)
	}
	t.Cleanup(func() { _ = client.Close() })
	_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(kernelTimeout))
	if server, err = ln.Accept(); err != nil {
		t.Fatalf("accept: %v", err)
	}
	t.Cleanup(func() { _ = server.Close() })
	if mp, err := client.(*net.TCPConn).MultipathTCP(); !mp || err != nil {
		t.Fatalf("the connection is not MPTCP (%v, %v)", mp, err)
	}
	return client, server
}

// exchange sends n bytes each way, which also completes the MPTCP
// handshake: the in-kernel path manager opens subflows only then.
func exchange(t *testing.T, client, server net.Conn, n int) {
	t.Helper()
	for _, d := range []struct{ from, to net.Conn }{{client, server}, {server, client}} {
		_ = d.to.SetReadDeadline(time.Now().Add(kernelTimeout))
		errc := make(chan error, 1)
		go func() { _, err := d.from.Write(make([]byte, n)); errc <- err }()
		if _, err := io.ReadFull(d.to, make([]byte, n)); err != nil {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("write %d bytes: %v", n, err)
		}
	}
}

// dialDiag opens a client in ns, closed at cleanup.
func dialDiag(t *testing.T, ns *netns.Handle) *Client {
	t.Helper()
	c, err := Dial(&Config{NetNS: ns.FD()})
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// settled reports whether c has n established subflows, as many as the
// kernel counts: the two dumps behind Connections are not one snapshot.
func settled(c Connection, n int) bool {
	if len(c.Subflows) != n || c.Info.TotalSubflows() != n {
		return false
	}
	for _, s := range c.Subflows {
		if s.State != StateEstablished {
			return false
		}
	}
	return true
}

// waitConnection polls until the namespace has exactly one connection
// besides listeners, settled with n subflows, and returns it.
func waitConnection(t *testing.T, c *Client, n int) Connection {
	t.Helper()
	deadline := time.Now().Add(kernelTimeout)
	var last []Connection
	for {
		conns, err := c.Connections()
		if err != nil {
			t.Fatalf("Connections: %v", err)
		}
		last = conns
		var found []Connection
		for _, conn := range conns {
			if !conn.Listening() {
				found = append(found, conn)
			}
		}
		if len(found) == 1 && settled(found[0], n) {
			return found[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no single connection with %d subflows after %v: %+v", n, kernelTimeout, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// MPTCP_INFO is the getsockopt(SOL_MPTCP) option that returns struct
// mptcp_info (include/uapi/linux/mptcp.h).
const MPTCP_INFO = 1

// sockoptInfo reads the connection's mptcp_info from its socket, a source
// independent of sock_diag.
func sockoptInfo(t *testing.T, conn net.Conn) Info {
	t.Helper()
	rc, err := conn.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n := uint32(len(buf))
	var errno syscall.Errno
	err = rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall6(unix.SYS_GETSOCKOPT, fd, mptcp.SOL_MPTCP, MPTCP_INFO,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
	})
	if err != nil || errno != 0 {
		t.Fatalf("getsockopt MPTCP_INFO: %v %v", err, errno)
	}
	info, err := parseMPTCPInfo(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return info
}

func addrPort(a net.Addr) netip.AddrPort { return a.(*net.TCPAddr).AddrPort() }

// checkSubflow compares a subflow's addresses and ids.
func checkSubflow(t *testing.T, side string, s Subflow, local, remote netip.AddrPort, localID, remoteID mptcp.ID, initial bool) {
	t.Helper()
	if s.Local != local || s.Remote != remote || s.LocalID != localID || s.RemoteID != remoteID || s.Initial() != initial {
		t.Errorf("%s subflow %v -> %v ids %d/%d initial %v; want %v -> %v ids %d/%d initial %v",
			side, s.Local, s.Remote, s.LocalID, s.RemoteID, s.Initial(), local, remote, localID, remoteID, initial)
	}
	if s.State != StateEstablished || s.TCP.State != StateEstablished {
		t.Errorf("%s subflow %v in state %v (tcp_info %v), want ESTABLISHED", side, s.Local, s.State, s.TCP.State)
	}
}

func TestKernelConnections(t *testing.T) {
	p := newTwoPathPair(t)
	client, server := p.connect(t)
	exchange(t, client, server, 5)
	cc, sc := dialDiag(t, p.clientH), dialDiag(t, p.serverH)
	cconn, sconn := waitConnection(t, cc, 2), waitConnection(t, sc, 2)

	// The connection, from both ends.
	clientTok, serverTok := sockoptInfo(t, client).Token, sockoptInfo(t, server).Token
	for _, c := range []struct {
		side          string
		conn          Connection
		local, remote netip.AddrPort
		token         mptcp.Token
	}{
		{"client", cconn, addrPort(client.LocalAddr()), addrPort(client.RemoteAddr()), clientTok},
		{"server", sconn, addrPort(server.LocalAddr()), addrPort(server.RemoteAddr()), serverTok},
	} {
		if c.conn.Local != c.local || c.conn.Remote != c.remote || c.conn.State != StateEstablished {
			t.Errorf("%s: %v -> %v %v, want %v -> %v ESTABLISHED", c.side, c.conn.Local, c.conn.Remote, c.conn.State, c.local, c.remote)
		}
		if c.conn.Info.Token != c.token || c.conn.Info.Token == 0 {
			t.Errorf("%s: token %v, getsockopt(MPTCP_INFO) says %v", c.side, c.conn.Info.Token, c.token)
		}
		if c.conn.Family != AF_INET || c.conn.Inode == 0 || c.conn.Info.Size < 96 {
			t.Errorf("%s: family %d inode %d mptcp_info of %d bytes; want AF_INET, an inode, 96 bytes or more",
				c.side, c.conn.Family, c.conn.Inode, c.conn.Info.Size)
		}
	}

	// Its subflows: the initial one, then the join from 10.1.2.2, bound
	// to c1 by its endpoint in the client.
	cs, ss := cconn.Subflows, sconn.Subflows
	joinLocal := cs[1].Local
	checkSubflow(t, "client", cs[0], cconn.Local, cconn.Remote, 0, 0, true)
	checkSubflow(t, "client", cs[1], netip.AddrPortFrom(clientAddr1, joinLocal.Port()), cconn.Remote, 1, 0, false)
	checkSubflow(t, "server", ss[0], sconn.Local, sconn.Remote, 0, 0, true)
	checkSubflow(t, "server", ss[1], sconn.Local, joinLocal, 0, 1, false)
	if cs[1].IfIndex != p.c1Index || cs[0].IfIndex != 0 {
		t.Errorf("client subflows on ifindex %d and %d, want 0 and c1's %d", cs[0].IfIndex, cs[1].IfIndex, p.c1Index)
	}
	if cs[1].RemoteToken != serverTok {
		t.Errorf("the client's join knows the server's token as %v, want %v", cs[1].RemoteToken, serverTok)
	}
	// Subflows have no file: they show their MPTCP socket's inode.
	for _, c := range []Connection{cconn, sconn} {
		for _, s := range c.Subflows {
			if s.Backup() || s.Inode != c.Inode {
				t.Errorf("subflow %v: backup %v, inode %d; want no backup, the connection's inode %d", s.Local, s.Backup(), s.Inode, c.Inode)
			}
		}
	}

	// Byte counters grow with data sent, on the connection and its subflows.
	const n = 1 << 20
	exchange(t, client, server, n)
	cconn2, sconn2 := waitConnection(t, cc, 2), waitConnection(t, sc, 2)
	if sent, recv := cconn2.Info.BytesSent-cconn.Info.BytesSent, sconn2.Info.BytesReceived-sconn.Info.BytesReceived; sent < n || recv < n {
		t.Errorf("after %d bytes each way: client sent %d more, server received %d more", n, sent, recv)
	}
	var sfSent, sfRecv uint64
	for i := range 2 {
		sfSent += cconn2.Subflows[i].TCP.BytesSent - cs[i].TCP.BytesSent
		sfRecv += sconn2.Subflows[i].TCP.BytesReceived - ss[i].TCP.BytesReceived
	}
	if sfSent < n || sfRecv < n {
		t.Errorf("after %d bytes: the client's subflows sent %d more, the server's received %d more", n, sfSent, sfRecv)
	}

	// The server's listener is there too, told apart by its state.
	conns, err := sc.Connections()
	if err != nil {
		t.Fatal(err)
	}
	var listeners int
	for _, c := range conns {
		if c.Listening() {
			listeners++
			if c.Local.Addr() != serverAddr || c.Local.Port() != sconn.Local.Port() || len(c.Subflows) != 0 {
				t.Errorf("listener %v with %d subflows, want %v:%d and none", c.Local, len(c.Subflows), serverAddr, sconn.Local.Port())
			}
		}
	}
	if listeners != 1 {
		t.Errorf("%d listeners in the server namespace, want 1", listeners)
	}
	// ConnectionsIn leaves the listener out, and keeps the subflows.
	conns, err = sc.ConnectionsIn(AllStates)
	if err != nil {
		t.Fatal(err)
	}
	if len(conns) != 1 || conns[0].Listening() || conns[0].Info.Token != serverTok || len(conns[0].Subflows) != 2 {
		t.Errorf("ConnectionsIn(all) in the server: %+v, want only the connection (token %v) and its 2 subflows", conns, serverTok)
	}
}

// TestKernelDestroy aborts the join subflow of a live connection: the
// connection goes on over the initial one, and a state filter leaves out
// subflows in other states.
func TestKernelDestroy(t *testing.T) {
	p := newTwoPathPair(t)
	client, server := p.connect(t)
	exchange(t, client, server, 5)
	cc := dialDiag(t, p.clientH)
	conn := waitConnection(t, cc, 2)

	closing, err := cc.ConnectionsIn(StatesOf(StateFinWait1, StateClosing, StateLastAck))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range closing {
		if len(c.Subflows) != 0 {
			t.Errorf("a dump of closing subflows gave %v's %+v", c.Local, c.Subflows)
		}
	}
	if len(closing) == 0 {
		t.Error("a dump of closing subflows left out the connection itself")
	}

	join := conn.Subflows[1]
	if err := cc.Destroy(join); err != nil {
		t.Fatalf("Destroy(%v -> %v): %v", join.Local, join.Remote, err)
	}
	waitConnection(t, cc, 1)
	exchange(t, client, server, 1<<16)
	// Gone already: not an error.
	if err := cc.Destroy(join); err != nil {
		t.Errorf("Destroy of a socket already gone: %v", err)
	}
	// A stale cookie names another socket: never hit.
	initial := conn.Subflows[0]
	initial.Cookie++
	if err := cc.Destroy(initial); err != nil {
		t.Errorf("Destroy with a stale cookie: %v", err)
	}
	waitConnection(t, cc, 1)
}
