package mptcpdiag

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// dumpKey names one dump request: its family and protocol.
type dumpKey struct {
	family   uint8
	protocol uint32
}

// requestKey decodes the family and protocol a request asks for, checking
// the header on the way.
func requestKey(t *testing.T, req netlink.Message) dumpKey {
	t.Helper()
	if req.Header.Type != SOCK_DIAG_BY_FAMILY || req.Header.Flags != netlink.Request|netlink.Dump {
		t.Errorf("request header %+v, want SOCK_DIAG_BY_FAMILY, request|dump", req.Header)
	}
	if len(req.Data) < sizeofInetDiagReqV2 {
		t.Fatalf("request of %d bytes", len(req.Data))
	}
	k := dumpKey{family: req.Data[0], protocol: uint32(req.Data[1])}
	attrs, err := netlink.UnmarshalAttributes(req.Data[sizeofInetDiagReqV2:])
	if err != nil {
		t.Fatalf("request attributes: %v", err)
	}
	for _, a := range attrs {
		if a.Type == INET_DIAG_REQ_PROTOCOL {
			k.protocol = binary.NativeEndian.Uint32(a.Data)
		}
	}
	return k
}

// dumpRequest is a dump asked for, with the states it asked for.
type dumpRequest struct {
	dumpKey
	states States
}

// keys drops the states of asked.
func keys(asked []dumpRequest) []dumpKey {
	var ks []dumpKey
	for _, a := range asked {
		ks = append(ks, a.dumpKey)
	}
	return ks
}

// testDiagClient serves each dump from replies (no entry: an empty dump)
// and records the dumps asked for.
func testDiagClient(t *testing.T, replies map[dumpKey][][]byte, errs map[dumpKey]syscall.Errno, asked *[]dumpRequest) *Client {
	t.Helper()
	conn := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		req := reqs[0]
		k := requestKey(t, req)
		*asked = append(*asked, dumpRequest{k, States(binary.NativeEndian.Uint32(req.Data[4:8]))})
		// Replies carry the request's sequence number, as the kernel's.
		h := netlink.Header{Sequence: req.Header.Sequence, PID: req.Header.PID}
		if errno, ok := errs[k]; ok {
			h.Type = netlink.Error
			return []netlink.Message{{Header: h, Data: binary.NativeEndian.AppendUint32(nil, uint32(-int32(errno)))}}, nil
		}
		h.Flags = netlink.Multi
		var msgs []netlink.Message
		for _, data := range replies[k] {
			h.Type = SOCK_DIAG_BY_FAMILY
			msgs = append(msgs, netlink.Message{Header: h, Data: data})
		}
		h.Type = netlink.Done
		return append(msgs, netlink.Message{Header: h}), nil
	})
	c := &Client{c: &client{conn: conn}}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestClientConnections(t *testing.T) {
	inet, inet6 := dumpKey{AF_INET, mptcp.IPPROTO_MPTCP}, dumpKey{AF_INET6, mptcp.IPPROTO_MPTCP}
	tcp4, tcp6 := dumpKey{AF_INET, IPPROTO_TCP}, dumpKey{AF_INET6, IPPROTO_TCP}
	plainTCP := testSock{family: AF_INET6, state: StateEstablished, local: "[2001:db8::1]:22", remote: "[2001:db8::2]:40000"}.encode(t)
	var asked []dumpRequest
	c := testDiagClient(t, map[dumpKey][][]byte{
		inet: {capturedConnection},
		tcp4: {capturedJoin, capturedInitial},
		tcp6: {plainTCP},
	}, nil, &asked)
	conns, err := c.Connections()
	if err != nil {
		t.Fatalf("Connections: %v", err)
	}
	// An AF_INET connection has no IPv6 subflows to look for.
	if diff := cmp.Diff([]dumpKey{inet, inet6, tcp4}, keys(asked), cmp.AllowUnexported(dumpKey{})); diff != "" {
		t.Errorf("unexpected dumps (-want +got):\n%s", diff)
	}
	if len(conns) != 1 || len(conns[0].Subflows) != 2 {
		t.Fatalf("got %+v, want one connection with 2 subflows", conns)
	}
	if sf := conns[0].Subflows; !sf[0].Initial() || sf[1].Initial() || sf[1].IfIndex != 3 {
		t.Errorf("subflows %+v, want the initial one first, then the join on ifindex 3", sf)
	}
}

// TestClientConnectionsIn checks that a narrow listing asks the kernel
// for no listeners and only the TCP dumps its connections need.
func TestClientConnectionsIn(t *testing.T) {
	inet, inet6 := dumpKey{AF_INET, mptcp.IPPROTO_MPTCP}, dumpKey{AF_INET6, mptcp.IPPROTO_MPTCP}
	tcp4, tcp6 := dumpKey{AF_INET, IPPROTO_TCP}, dumpKey{AF_INET6, IPPROTO_TCP}
	listener := testSock{family: AF_INET6, state: StateListen, local: "[::]:22"}.encode(t)
	conn6 := testSock{family: AF_INET6, state: StateEstablished, local: "[::ffff:10.0.0.1]:40000", remote: "[::ffff:10.0.0.2]:80"}.encode(t)
	subflows := AllStates &^ StatesOf(StateListen)
	for _, tt := range []struct {
		name    string
		replies map[dumpKey][][]byte
		want    []dumpKey
	}{
		// A listener is not asked for, and would not need subflows.
		{"no connections", map[dumpKey][][]byte{inet6: {listener}}, []dumpKey{inet, inet6}},
		{"an IPv4 connection", map[dumpKey][][]byte{inet: {capturedConnection}}, []dumpKey{inet, inet6, tcp4}},
		// An AF_INET6 connection may have subflows of either family.
		{"an IPv6 connection", map[dumpKey][][]byte{inet6: {conn6}}, []dumpKey{inet, inet6, tcp4, tcp6}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var asked []dumpRequest
			if _, err := testDiagClient(t, tt.replies, nil, &asked).ConnectionsIn(AllStates); err != nil {
				t.Fatalf("ConnectionsIn: %v", err)
			}
			if diff := cmp.Diff(tt.want, keys(asked), cmp.AllowUnexported(dumpKey{})); diff != "" {
				t.Errorf("unexpected dumps (-want +got):\n%s", diff)
			}
			for _, a := range asked {
				if a.states != subflows {
					t.Errorf("%+v asked for states %#x, want all but LISTEN (%#x)", a.dumpKey, a.states, subflows)
				}
			}
		})
	}
}

func TestClientErrors(t *testing.T) {
	v6 := map[dumpKey][][]byte{{AF_INET6, mptcp.IPPROTO_MPTCP}: {testSock{family: AF_INET6, state: StateEstablished,
		local: "[2001:db8::1]:40000", remote: "[2001:db8::2]:80"}.encode(t)}}
	tests := []struct {
		name    string
		replies map[dumpKey][][]byte
		errs    map[dumpKey]syscall.Errno
		is      error
	}{
		{"no mptcp_diag", nil, map[dumpKey]syscall.Errno{{AF_INET, mptcp.IPPROTO_MPTCP}: syscall.ENOENT}, mptcp.ErrNotSupported},
		{"no permission", v6, map[dumpKey]syscall.Errno{{AF_INET6, IPPROTO_TCP}: syscall.EPERM}, os.ErrPermission},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []dumpRequest
			_, err := testDiagClient(t, tt.replies, tt.errs, &asked).Connections()
			if !errors.Is(err, tt.is) {
				t.Errorf("error %v, want one that Is %v", err, tt.is)
			}
			var oe *netlink.OpError
			if errors.As(err, &oe) {
				t.Errorf("a netlink error leaks: %#v", err)
			}
		})
	}
}

func TestClientClosed(t *testing.T) {
	var asked []dumpRequest
	c := testDiagClient(t, nil, nil, &asked)
	for range 2 {
		if err := c.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
	}
	if _, err := c.Connections(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Connections after Close: %v, want net.ErrClosed", err)
	}
	if len(asked) != 0 {
		t.Errorf("a closed client sent %v", asked)
	}
}

func TestClientDestroy(t *testing.T) {
	s := Subflow{Family: AF_INET, Local: netip.MustParseAddrPort("10.1.1.2:1"), Remote: netip.MustParseAddrPort("10.3.0.1:2"), Cookie: 9}
	for _, tt := range []struct {
		name  string
		errno syscall.Errno
		is    error // nil: no error
	}{
		{"done", 0, nil},
		{"gone since the dump", syscall.ENOENT, nil},
		{"no CONFIG_INET_DIAG_DESTROY", syscall.EOPNOTSUPP, mptcp.ErrNotSupported},
		{"no permission", syscall.EPERM, os.ErrPermission},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []netlink.Message
			conn := nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
				got = append(got, reqs...)
				h := netlink.Header{Type: netlink.Error, Sequence: reqs[0].Header.Sequence, PID: reqs[0].Header.PID}
				return []netlink.Message{{Header: h, Data: binary.NativeEndian.AppendUint32(nil, uint32(-int32(tt.errno)))}}, nil
			})
			c := &Client{c: &client{conn: conn}}
			defer c.Close()
			err := c.Destroy(s)
			if (tt.is == nil) != (err == nil) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Errorf("Destroy: %v, want %v", err, tt.is)
			}
			want, _ := encodeExact(s)
			if len(got) != 1 || got[0].Header.Type != SOCK_DESTROY || got[0].Header.Flags&netlink.Acknowledge == 0 || !bytes.Equal(got[0].Data, want) {
				t.Errorf("sent %+v, want one SOCK_DESTROY with an ack asked for and the exact request", got)
			}
		})
	}
}
