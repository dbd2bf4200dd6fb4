package mptcp

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ptr returns a pointer to v (for Limits).
func ptr(v uint32) *uint32 { return &v }

func TestClientRequests(t *testing.T) {
	const (
		ack  = netlink.Request | netlink.Acknowledge
		dump = netlink.Request | netlink.Dump
	)
	addr := uint16(MPTCP_PM_ATTR_ADDR)
	remote := uint16(MPTCP_PM_ATTR_ADDR_REMOTE)
	fam4 := attr{Type: MPTCP_PM_ADDR_ATTR_FAMILY, Data: u16(unix.AF_INET)}
	fam6 := attr{Type: MPTCP_PM_ADDR_ATTR_FAMILY, Data: u16(unix.AF_INET6)}
	id := func(v uint8) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_ID, Data: u8(v)} }
	addr4 := func(s string) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_ADDR4, Data: ip(s)} }
	addr6 := func(s string) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_ADDR6, Data: ip(s)} }
	port := func(v uint16) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_PORT, Data: u16(v)} }
	flags := func(v Flags) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_FLAGS, Data: u32(uint32(v))} }
	ifidx := func(v int32) attr { return attr{Type: MPTCP_PM_ADDR_ATTR_IF_IDX, Data: s32(v)} }
	token := attr{Type: MPTCP_PM_ATTR_TOKEN, Data: u32(0x7ab06eec)}
	const tok = Token(0x7ab06eec)

	tests := []struct {
		name  string
		call  func(c *Client) error
		cmd   uint8
		flags netlink.HeaderFlags
		attrs []attr
		reply []byte // data of the single reply, if any
	}{
		{
			name: "add endpoint IPv4 with id, flags and device",
			call: func(c *Client) error {
				return c.AddEndpoint(Endpoint{ID: 3, Addr: netip.MustParseAddr("10.1.2.2"), Flags: FlagSubflow | FlagBackup, IfIndex: 7})
			},
			cmd:   MPTCP_PM_CMD_ADD_ADDR,
			flags: ack,
			attrs: []attr{nest(addr, fam4, id(3), addr4("10.1.2.2"), flags(FlagSubflow|FlagBackup), ifidx(7))},
		},
		{
			name: "add endpoint IPv6 signal with port, kernel picks id",
			call: func(c *Client) error {
				return c.AddEndpoint(Endpoint{Addr: netip.MustParseAddr("2001:db8::1"), Port: 6000, Flags: FlagSignal})
			},
			cmd:   MPTCP_PM_CMD_ADD_ADDR,
			flags: ack,
			attrs: []attr{nest(addr, fam6, addr6("2001:db8::1"), port(6000), flags(FlagSignal))},
		},
		{
			name:  "add endpoint bare address",
			call:  func(c *Client) error { return c.AddEndpoint(Endpoint{Addr: netip.MustParseAddr("10.0.0.1")}) },
			cmd:   MPTCP_PM_CMD_ADD_ADDR,
			flags: ack,
			attrs: []attr{nest(addr, fam4, addr4("10.0.0.1"))},
		},
		{
			name:  "delete endpoint by id",
			call:  func(c *Client) error { return c.DeleteEndpoint(5, netip.Addr{}) },
			cmd:   MPTCP_PM_CMD_DEL_ADDR,
			flags: ack,
			attrs: []attr{nest(addr, id(5))},
		},
		{
			name:  "delete id 0 address",
			call:  func(c *Client) error { return c.DeleteEndpoint(0, netip.MustParseAddr("10.0.0.1")) },
			cmd:   MPTCP_PM_CMD_DEL_ADDR,
			flags: ack,
			attrs: []attr{nest(addr, fam4, id(0), addr4("10.0.0.1"))},
		},
		{
			name:  "flush endpoints",
			call:  func(c *Client) error { return c.FlushEndpoints() },
			cmd:   MPTCP_PM_CMD_FLUSH_ADDRS,
			flags: ack,
		},
		{
			name: "set endpoint flags with id and address sends both, drops unchangeable flags",
			call: func(c *Client) error {
				return c.SetEndpointFlags(Endpoint{ID: 2, Addr: netip.MustParseAddr("10.0.0.1"), Flags: FlagSubflow | FlagBackup})
			},
			cmd:   MPTCP_PM_CMD_SET_FLAGS,
			flags: ack,
			attrs: []attr{nest(addr, fam4, id(2), addr4("10.0.0.1"), flags(FlagBackup))},
		},
		{
			name: "set endpoint flags by address and port, clearing all",
			call: func(c *Client) error {
				return c.SetEndpointFlags(Endpoint{Addr: netip.MustParseAddr("10.0.0.1"), Port: 6000})
			},
			cmd:   MPTCP_PM_CMD_SET_FLAGS,
			flags: ack,
			attrs: []attr{nest(addr, fam4, addr4("10.0.0.1"), port(6000))},
		},
		{
			name:  "set both limits",
			call:  func(c *Client) error { return c.SetLimits(Limits{Subflows: ptr(4), AddAddrAccepted: ptr(2)}) },
			cmd:   MPTCP_PM_CMD_SET_LIMITS,
			flags: ack,
			attrs: []attr{
				{Type: MPTCP_PM_ATTR_RCV_ADD_ADDRS, Data: u32(2)},
				{Type: MPTCP_PM_ATTR_SUBFLOWS, Data: u32(4)},
			},
		},
		{
			name:  "set subflows limit only, zero is a value",
			call:  func(c *Client) error { return c.SetLimits(Limits{Subflows: ptr(0)}) },
			cmd:   MPTCP_PM_CMD_SET_LIMITS,
			flags: ack,
			attrs: []attr{{Type: MPTCP_PM_ATTR_SUBFLOWS, Data: u32(0)}},
		},
		{
			name: "get endpoint",
			call: func(c *Client) error {
				_, err := c.Endpoint(7)
				return err
			},
			cmd:   MPTCP_PM_CMD_GET_ADDR,
			flags: netlink.Request,
			attrs: []attr{nest(addr, id(7))},
			reply: capturedEndpoint4,
		},
		{
			name: "dump endpoints",
			call: func(c *Client) error {
				_, err := c.Endpoints()
				return err
			},
			cmd:   MPTCP_PM_CMD_GET_ADDR,
			flags: dump,
			reply: capturedEndpoint6,
		},
		{
			name: "get limits",
			call: func(c *Client) error {
				_, err := c.Limits()
				return err
			},
			cmd:   MPTCP_PM_CMD_GET_LIMITS,
			flags: netlink.Request,
			reply: capturedLimits,
		},
		{
			name: "announce",
			call: func(c *Client) error {
				return c.Announce(tok, Endpoint{ID: 4, Addr: netip.MustParseAddr("10.1.2.1"), Port: 6000, Flags: FlagSignal})
			},
			cmd:   MPTCP_PM_CMD_ANNOUNCE,
			flags: ack,
			attrs: []attr{token, nest(addr, fam4, id(4), addr4("10.1.2.1"), port(6000), flags(FlagSignal))},
		},
		{
			name:  "remove id 0",
			call:  func(c *Client) error { return c.Remove(tok, 0) },
			cmd:   MPTCP_PM_CMD_REMOVE,
			flags: ack,
			attrs: []attr{token, {Type: MPTCP_PM_ATTR_LOC_ID, Data: u8(0)}},
		},
		{
			name: "create subflow",
			call: func(c *Client) error {
				return c.CreateSubflow(tok, Endpoint{ID: 3, Addr: netip.MustParseAddr("10.1.2.2"), IfIndex: 2},
					netip.MustParseAddrPort("10.1.1.1:5000"))
			},
			cmd:   MPTCP_PM_CMD_SUBFLOW_CREATE,
			flags: ack,
			attrs: []attr{
				token,
				nest(addr, fam4, id(3), addr4("10.1.2.2"), ifidx(2)),
				nest(remote, fam4, addr4("10.1.1.1"), port(5000)),
			},
		},
		{
			name: "destroy IPv6 subflow",
			call: func(c *Client) error {
				return c.DestroySubflow(tok, netip.MustParseAddrPort("[2001:db8::2]:41331"), netip.MustParseAddrPort("[2001:db8::1]:5000"))
			},
			cmd:   MPTCP_PM_CMD_SUBFLOW_DESTROY,
			flags: ack,
			attrs: []attr{
				token,
				nest(addr, fam6, addr6("2001:db8::2"), port(41331)),
				nest(remote, fam6, addr6("2001:db8::1"), port(5000)),
			},
		},
		{
			name: "set subflow backup",
			call: func(c *Client) error {
				return c.SetSubflowBackup(tok, netip.MustParseAddrPort("10.1.2.2:41331"), netip.MustParseAddrPort("10.1.2.1:6000"), true)
			},
			cmd:   MPTCP_PM_CMD_SET_FLAGS,
			flags: ack,
			attrs: []attr{
				token,
				nest(addr, fam4, addr4("10.1.2.2"), port(41331), flags(FlagBackup)),
				nest(remote, fam4, addr4("10.1.2.1"), port(6000)),
			},
		},
		{
			name: "clear subflow backup",
			call: func(c *Client) error {
				return c.SetSubflowBackup(tok, netip.MustParseAddrPort("10.1.2.2:41331"), netip.MustParseAddrPort("10.1.2.1:6000"), false)
			},
			cmd:   MPTCP_PM_CMD_SET_FLAGS,
			flags: ack,
			attrs: []attr{
				token,
				nest(addr, fam4, addr4("10.1.2.2"), port(41331)),
				nest(remote, fam4, addr4("10.1.2.1"), port(6000)),
			},
		},
		{
			name: "dump connection endpoints",
			call: func(c *Client) error {
				_, err := c.ConnectionEndpoints(tok)
				return err
			},
			cmd:   MPTCP_PM_CMD_GET_ADDR,
			flags: dump,
			attrs: []attr{token},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var (
				calls int
				greq  genetlink.Message
				nreq  netlink.Message
			)
			c := testClient(t, func(g genetlink.Message, n netlink.Message) ([]genetlink.Message, error) {
				calls++
				greq, nreq = g, n
				if tt.reply == nil {
					return nil, io.EOF // no reply (genltest's convention)
				}
				return []genetlink.Message{{Header: genetlink.Header{Command: tt.cmd, Version: MPTCP_PM_VER}, Data: tt.reply}}, nil
			})
			if err := tt.call(c); err != nil {
				t.Fatalf("call: %v", err)
			}
			if calls != 1 {
				t.Fatalf("got %d requests, want 1", calls)
			}
			if got, want := nreq.Header.Type, netlink.HeaderType(testFamily.ID); got != want {
				t.Errorf("netlink type = %d, want family %d", got, want)
			}
			if got := nreq.Header.Flags; got != tt.flags {
				t.Errorf("netlink flags = %v, want %v", got, tt.flags)
			}
			if diff := cmp.Diff(genetlink.Header{Command: tt.cmd, Version: MPTCP_PM_VER}, greq.Header); diff != "" {
				t.Errorf("unexpected genetlink header (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.attrs, decodeAttrs(t, greq.Data)); diff != "" {
				t.Errorf("unexpected request attributes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientReplies(t *testing.T) {
	reply := func(data ...[]byte) genltest.Func {
		return func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
			if len(data) == 0 {
				return nil, io.EOF
			}
			var msgs []genetlink.Message
			for _, d := range data {
				msgs = append(msgs, genetlink.Message{Header: genetlink.Header{Command: MPTCP_PM_CMD_GET_ADDR, Version: 1}, Data: d})
			}
			return msgs, nil
		}
	}
	want := []Endpoint{
		{ID: 1, Addr: netip.MustParseAddr("10.1.2.2"), Flags: FlagSubflow | FlagBackup, IfIndex: 1},
		{ID: 2, Addr: netip.MustParseAddr("2001:db8::1"), Flags: FlagSignal},
	}

	eps, err := testClient(t, reply(capturedEndpoint4, capturedEndpoint6)).Endpoints()
	if err != nil {
		t.Fatalf("Endpoints: %v", err)
	}
	if diff := cmp.Diff(want, eps, cmpOpts...); diff != "" {
		t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
	}

	eps, err = testClient(t, reply()).Endpoints()
	if err != nil || len(eps) != 0 {
		t.Errorf("empty table: got %v, %v; want no endpoints, no error", eps, err)
	}

	e, err := testClient(t, reply(capturedEndpoint6)).Endpoint(2)
	if err != nil {
		t.Fatalf("Endpoint: %v", err)
	}
	if diff := cmp.Diff(want[1], e, cmpOpts...); diff != "" {
		t.Errorf("unexpected endpoint (-want +got):\n%s", diff)
	}

	if _, err := testClient(t, reply(capturedEndpoint4, capturedEndpoint6)).Endpoint(1); err == nil {
		t.Error("Endpoint with two replies: no error")
	}

	l, err := testClient(t, reply(capturedLimits)).Limits()
	if err != nil {
		t.Fatalf("Limits: %v", err)
	}
	if diff := cmp.Diff(Limits{Subflows: ptr(2), AddAddrAccepted: ptr(0)}, l); diff != "" {
		t.Errorf("unexpected limits (-want +got):\n%s", diff)
	}

	_, err = testClient(t, reply(mustHex("0800030002000000"))).Limits()
	if err == nil || !strings.Contains(err.Error(), "get limits") {
		t.Errorf("Limits without add_addr_accepted: err = %v, want an error naming the operation", err)
	}
}

func TestClientRejectsBeforeSending(t *testing.T) {
	v4 := netip.MustParseAddr("10.0.0.1")
	tests := []struct {
		name string
		call func(c *Client) error
	}{
		{"add without address", func(c *Client) error { return c.AddEndpoint(Endpoint{ID: 1, Flags: FlagSubflow}) }},
		{"delete id 0 without address", func(c *Client) error { return c.DeleteEndpoint(0, netip.Addr{}) }},
		{"set flags without id or address", func(c *Client) error { return c.SetEndpointFlags(Endpoint{Flags: FlagBackup}) }},
		{"announce without address", func(c *Client) error { return c.Announce(1, Endpoint{ID: 1, Flags: FlagSignal}) }},
		{"create subflow without remote", func(c *Client) error { return c.CreateSubflow(1, Endpoint{Addr: v4}, netip.AddrPort{}) }},
		{"destroy subflow without local port", func(c *Client) error {
			return c.DestroySubflow(1, netip.AddrPortFrom(v4, 0), netip.MustParseAddrPort("10.0.0.2:5000"))
		}},
		{"destroy subflow without remote port", func(c *Client) error {
			return c.DestroySubflow(1, netip.AddrPortFrom(v4, 4000), netip.MustParseAddrPort("10.0.0.2:0"))
		}},
		{"subflow backup without local", func(c *Client) error {
			return c.SetSubflowBackup(1, netip.AddrPort{}, netip.MustParseAddrPort("10.0.0.2:5000"), true)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			c := testClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
				calls++
				return nil, nil
			})
			err := tt.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), "mptcp: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
			if calls != 0 {
				t.Errorf("sent %d requests, want none", calls)
			}
		})
	}
}

func TestClientKernelErrors(t *testing.T) {
	tests := []struct {
		name  string
		errno syscall.Errno
		call  func(c *Client) error
		op    string
		is    []error
		isNot []error
	}{
		{
			name:  "duplicate endpoint",
			errno: unix.EEXIST,
			call:  func(c *Client) error { return c.AddEndpoint(Endpoint{Addr: netip.MustParseAddr("10.0.0.1")}) },
			op:    "add endpoint",
			is:    []error{os.ErrExist, syscall.EEXIST},
			isNot: []error{os.ErrNotExist, ErrNotSupported},
		},
		{
			name:  "table full",
			errno: unix.ERANGE,
			call:  func(c *Client) error { return c.AddEndpoint(Endpoint{Addr: netip.MustParseAddr("10.0.0.9")}) },
			op:    "add endpoint",
			is:    []error{syscall.ERANGE},
			isNot: []error{os.ErrExist},
		},
		{
			name:  "no such subflow",
			errno: unix.ESRCH,
			call: func(c *Client) error {
				return c.DestroySubflow(1, netip.MustParseAddrPort("10.0.0.1:1"), netip.MustParseAddrPort("10.0.0.2:2"))
			},
			op: "destroy subflow",
			is: []error{os.ErrNotExist},
		},
		{
			name:  "not admin",
			errno: unix.EPERM,
			call:  func(c *Client) error { return c.FlushEndpoints() },
			op:    "flush endpoints",
			is:    []error{os.ErrPermission},
		},
		{
			name:  "unknown command",
			errno: unix.EOPNOTSUPP,
			call:  func(c *Client) error { return c.Remove(1, 1) },
			op:    "remove",
			is:    []error{ErrNotSupported},
			isNot: []error{os.ErrPermission},
		},
		{
			name:  "get with kernel error",
			errno: unix.ENOENT,
			call: func(c *Client) error {
				_, err := c.Endpoint(9)
				return err
			},
			op: "get endpoint",
			is: []error{os.ErrNotExist},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
				return nil, genltest.Error(int(tt.errno))
			})
			err := tt.call(c)
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v (%T) is not an *Error", err, err)
			}
			if diff := cmp.Diff(&Error{Op: tt.op, Errno: tt.errno}, me); diff != "" {
				t.Errorf("unexpected error (-want +got):\n%s", diff)
			}
			var oe *netlink.OpError
			if errors.As(err, &oe) {
				t.Errorf("netlink.OpError leaks through %v", err)
			}
			for _, target := range tt.is {
				if !errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = false, want true", err, target)
				}
			}
			for _, target := range tt.isNot {
				if errors.Is(err, target) {
					t.Errorf("errors.Is(%v, %v) = true, want false", err, target)
				}
			}
		})
	}
}

func TestNewClientMissingFamily(t *testing.T) {
	conn := genltest.Dial(func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.ENOENT)) // what nlctrl answers for an unknown name
	})
	defer conn.Close()
	_, err := NewClient(conn)
	if !errors.Is(err, ErrNotSupported) {
		t.Fatalf("err = %v, want one that Is ErrNotSupported", err)
	}
	if !strings.Contains(err.Error(), `"mptcp_pm" not found: kernel`) {
		t.Errorf("error %q does not explain the missing family", err)
	}
}

func TestClientClose(t *testing.T) {
	c := testClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) { return nil, nil })
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := c.FlushEndpoints(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("FlushEndpoints after Close: err = %v, want net.ErrClosed", err)
	}
}

func TestErrorIs(t *testing.T) {
	tests := []struct {
		err  Error
		want []error // every target below not listed must not match
	}{
		{Error{Errno: unix.EEXIST}, []error{os.ErrExist}},
		{Error{Errno: unix.ENOENT}, []error{os.ErrNotExist}},
		{Error{Errno: unix.ESRCH}, []error{os.ErrNotExist}},
		{Error{Errno: unix.ENODEV}, []error{os.ErrNotExist}},
		{Error{Errno: unix.EINVAL, Message: "address not found"}, []error{os.ErrNotExist}},
		{Error{Errno: unix.EINVAL, Message: "invalid token"}, []error{os.ErrNotExist}},
		{Error{Errno: unix.EINVAL, Message: "address with id 7 not found"}, []error{os.ErrNotExist}},
		{Error{Errno: unix.EINVAL, Message: "address with id x not found"}, nil},
		{Error{Errno: unix.EINVAL, Message: "address with id 7 not found here"}, nil},
		{Error{Errno: unix.EINVAL, Message: "limit greater than maximum (8)"}, nil},
		{Error{Errno: unix.EINVAL}, nil},
		{Error{Errno: unix.EPERM}, []error{os.ErrPermission}},
		{Error{Errno: unix.EACCES}, []error{os.ErrPermission}},
		{Error{Errno: unix.EOPNOTSUPP}, []error{ErrNotSupported}},
		{Error{Errno: unix.EPROTONOSUPPORT}, []error{ErrNotSupported}},
		{Error{Errno: 524}, []error{ErrNotSupported}},
		{Error{Errno: unix.ENOBUFS}, []error{ErrEventsLost}},
		{Error{Errno: unix.ERANGE}, nil},
	}
	targets := []error{os.ErrExist, os.ErrNotExist, os.ErrPermission, ErrNotSupported, ErrEventsLost}
	for _, tt := range tests {
		for _, target := range targets {
			want := false
			for _, w := range tt.want {
				want = want || w == target
			}
			if got := errors.Is(&tt.err, target); got != want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", &tt.err, target, got, want)
			}
		}
		if !errors.Is(&tt.err, tt.err.Errno) {
			t.Errorf("errors.Is(%v, its errno) = false", &tt.err)
		}
	}
}

func TestWrapError(t *testing.T) {
	tests := []struct {
		name string
		in   error
		want string
		as   *Error
	}{
		{
			name: "extended ack",
			in:   &netlink.OpError{Op: "receive", Err: unix.EEXIST, Message: "too many addresses or duplicate one: -17"},
			want: "mptcp: add endpoint: file exists: too many addresses or duplicate one: -17",
			as:   &Error{Op: "add endpoint", Errno: unix.EEXIST, Message: "too many addresses or duplicate one: -17"},
		},
		{
			name: "system call error",
			in:   &netlink.OpError{Op: "receive", Err: os.NewSyscallError("recvmsg", unix.ENOBUFS)},
			want: "mptcp: add endpoint: no buffer space available",
			as:   &Error{Op: "add endpoint", Errno: unix.ENOBUFS},
		},
		{
			name: "no errno",
			in:   &netlink.OpError{Op: "validate", Err: errors.New("mismatched sequence in netlink reply")},
			want: "mptcp: add endpoint: netlink validate: mismatched sequence in netlink reply",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := wrapError("add endpoint", tt.in)
			if got := err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
			var oe *netlink.OpError
			if errors.As(err, &oe) {
				t.Errorf("netlink.OpError leaks through %v", err)
			}
			var me *Error
			errors.As(err, &me)
			if diff := cmp.Diff(tt.as, me); diff != "" {
				t.Errorf("unexpected *Error (-want +got):\n%s", diff)
			}
		})
	}
	if err := wrapError("x", nil); err != nil {
		t.Errorf("wrapError(nil) = %v", err)
	}
}
