package mptcptest

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

var addrCmp = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func u32(v uint32) *uint32 { return &v }

// dial returns a client of k, closed at cleanup.
func dial(t *testing.T, k *Kernel) *mptcp.Client {
	t.Helper()
	c, err := k.Dial()
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// checkErr compares err with the kernel error wanted (errno 0: success).
func checkErr(t *testing.T, err error, errno syscall.Errno, msg string) {
	t.Helper()
	if errno == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var me *mptcp.Error
	if !errors.As(err, &me) {
		t.Fatalf("got error %v, want a kernel error %v %q", err, errno, msg)
	}
	if me.Errno != errno || me.Message != msg {
		t.Fatalf("got error %v %q, want %v %q", me.Errno, me.Message, errno, msg)
	}
}

func sub(addr string) mptcp.Endpoint {
	return mptcp.Endpoint{Addr: ip(addr), Flags: mptcp.FlagSubflow}
}

func withID(e mptcp.Endpoint, id mptcp.ID) mptcp.Endpoint { e.ID = id; return e }

// TestEndpointRules checks each rule of the endpoint table through the
// real client: setup endpoints are added first (and must succeed), then do
// runs, and the answer and the table afterwards are compared.
func TestEndpointRules(t *testing.T) {
	const (
		s, sf, b, fm = mptcp.FlagSignal, mptcp.FlagSubflow, mptcp.FlagBackup, mptcp.FlagFullmesh
	)
	eight := []mptcp.Endpoint{sub("10.0.0.1"), sub("10.0.0.2"), sub("10.0.0.3"), sub("10.0.0.4"),
		sub("10.0.0.5"), sub("10.0.0.6"), sub("10.0.0.7"), sub("10.0.0.8")}
	three := []mptcp.Endpoint{sub("10.0.0.1"), sub("10.0.0.2"), sub("10.0.0.3")}
	add := func(e mptcp.Endpoint) func(*mptcp.Client) error {
		return func(c *mptcp.Client) error { return c.AddEndpoint(e) }
	}
	del := func(id mptcp.ID) func(*mptcp.Client) error {
		return func(c *mptcp.Client) error { return c.DeleteEndpoint(id, netip.Addr{}) }
	}
	setFlags := func(e mptcp.Endpoint) func(*mptcp.Client) error {
		return func(c *mptcp.Client) error { return c.SetEndpointFlags(e) }
	}
	tooMany := func(errno int) string { return fmt.Sprintf("too many addresses or duplicate one: -%d", errno) }
	tests := []struct {
		name  string
		setup []mptcp.Endpoint
		steps []func(*mptcp.Client) error // all but the last must succeed
		errno syscall.Errno
		msg   string
		want  []mptcp.Endpoint
	}{
		{
			name:  "first id is 1",
			steps: []func(*mptcp.Client) error{add(sub("10.0.0.1"))},
			want:  []mptcp.Endpoint{withID(sub("10.0.0.1"), 1)},
		},
		{
			name:  "at most 8 endpoints",
			setup: eight,
			steps: []func(*mptcp.Client) error{add(sub("10.0.0.9"))},
			errno: syscall.ERANGE, msg: tooMany(34),
		},
		{
			name:  "full table wins over duplicate",
			setup: eight,
			steps: []func(*mptcp.Client) error{add(sub("10.0.0.1"))},
			errno: syscall.ERANGE, msg: tooMany(34),
		},
		{
			name:  "duplicate address whatever the flags",
			setup: three,
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.2"), Flags: s | b})},
			errno: syscall.EEXIST, msg: tooMany(17),
		},
		{
			name:  "v4-mapped duplicate",
			setup: three,
			steps: []func(*mptcp.Client) error{add(sub("::ffff:10.0.0.2"))},
			errno: syscall.EEXIST, msg: tooMany(17),
		},
		{
			name:  "explicit id in use",
			setup: three,
			steps: []func(*mptcp.Client) error{add(withID(sub("10.0.0.9"), 2))},
			errno: syscall.EBUSY, msg: tooMany(16),
		},
		{
			name:  "id in use wins over duplicate",
			setup: three,
			steps: []func(*mptcp.Client) error{add(withID(sub("10.0.0.1"), 3))},
			errno: syscall.EBUSY, msg: tooMany(16),
		},
		{
			name:  "port needs signal",
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7000, Flags: b})},
			errno: syscall.EINVAL, msg: "flags must have signal and not subflow when using port",
		},
		{
			name:  "port refuses subflow",
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7000, Flags: s | sf})},
			errno: syscall.EINVAL, msg: "flags must have signal and not subflow when using port",
		},
		{
			name:  "signal and fullmesh",
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Flags: s | fm})},
			errno: syscall.EINVAL, msg: "flags mustn't have both signal and fullmesh",
		},
		{
			name:  "implicit cannot be added",
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Flags: mptcp.FlagImplicit})},
			errno: syscall.EINVAL, msg: "can't create IMPLICIT endpoint",
		},
		{
			name:  "unknown flags dropped",
			steps: []func(*mptcp.Client) error{add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Flags: sf | 0x40 | 0x100})},
			want:  []mptcp.Endpoint{withID(sub("10.0.0.1"), 1)},
		},
		{
			name: "same address with another port",
			steps: []func(*mptcp.Client) error{
				add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7000, Flags: s}),
				add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7001, Flags: s}),
				add(mptcp.Endpoint{Addr: ip("10.0.0.1"), Flags: s}),
			},
			want: []mptcp.Endpoint{
				{ID: 1, Addr: ip("10.0.0.1"), Port: 7000, Flags: s},
				{ID: 2, Addr: ip("10.0.0.1"), Port: 7001, Flags: s},
				{ID: 3, Addr: ip("10.0.0.1"), Flags: s},
			},
		},
		{
			name:  "a freed last id is reused",
			setup: three,
			steps: []func(*mptcp.Client) error{del(3), add(sub("10.0.0.4"))},
			want: []mptcp.Endpoint{withID(sub("10.0.0.1"), 1), withID(sub("10.0.0.2"), 2),
				withID(sub("10.0.0.4"), 3)},
		},
		{
			name:  "a freed lower id is not reused before the wrap",
			setup: three,
			steps: []func(*mptcp.Client) error{del(2), add(sub("10.0.0.4"))},
			want: []mptcp.Endpoint{withID(sub("10.0.0.1"), 1), withID(sub("10.0.0.3"), 3),
				withID(sub("10.0.0.4"), 4)},
		},
		{
			name:  "allocation continues after an explicit id",
			steps: []func(*mptcp.Client) error{add(withID(sub("10.0.0.1"), 100)), add(sub("10.0.0.2"))},
			want:  []mptcp.Endpoint{withID(sub("10.0.0.1"), 100), withID(sub("10.0.0.2"), 101)},
		},
		{
			name: "allocation wraps after 255",
			steps: []func(*mptcp.Client) error{add(sub("10.0.0.1")), add(withID(sub("10.0.0.2"), 255)),
				add(sub("10.0.0.3"))},
			want: []mptcp.Endpoint{withID(sub("10.0.0.1"), 1), withID(sub("10.0.0.3"), 2),
				withID(sub("10.0.0.2"), 255)},
		},
		{
			name:  "dump is ordered by id",
			steps: []func(*mptcp.Client) error{add(withID(sub("10.0.0.1"), 9)), add(withID(sub("10.0.0.2"), 4)), add(mptcp.Endpoint{Addr: ip("10.0.0.3"), Port: 1, Flags: s})},
			want: []mptcp.Endpoint{withID(sub("10.0.0.2"), 4), withID(sub("10.0.0.1"), 9),
				{ID: 10, Addr: ip("10.0.0.3"), Port: 1, Flags: s}},
		},
		{
			name:  "delete unknown id",
			setup: three,
			steps: []func(*mptcp.Client) error{del(7)},
			errno: syscall.EINVAL, msg: "address not found",
		},
		{
			name:  "delete id 0 changes nothing",
			setup: three,
			steps: []func(*mptcp.Client) error{func(c *mptcp.Client) error { return c.DeleteEndpoint(0, ip("10.0.0.1")) }},
			want: []mptcp.Endpoint{withID(sub("10.0.0.1"), 1), withID(sub("10.0.0.2"), 2),
				withID(sub("10.0.0.3"), 3)},
		},
		{
			name:  "flush restarts ids",
			setup: three,
			steps: []func(*mptcp.Client) error{func(c *mptcp.Client) error { return c.FlushEndpoints() }, add(sub("10.0.0.9"))},
			want:  []mptcp.Endpoint{withID(sub("10.0.0.9"), 1)},
		},
		{
			name:  "set flags changes backup and fullmesh only",
			setup: []mptcp.Endpoint{sub("10.0.0.1")},
			steps: []func(*mptcp.Client) error{setFlags(mptcp.Endpoint{ID: 1, Flags: s | b | fm})},
			want:  []mptcp.Endpoint{{ID: 1, Addr: ip("10.0.0.1"), Flags: sf | b | fm}},
		},
		{
			name:  "set flags by address",
			setup: []mptcp.Endpoint{sub("10.0.0.1"), sub("10.0.0.2")},
			steps: []func(*mptcp.Client) error{setFlags(mptcp.Endpoint{Addr: ip("10.0.0.2"), Flags: b})},
			want:  []mptcp.Endpoint{withID(sub("10.0.0.1"), 1), {ID: 2, Addr: ip("10.0.0.2"), Flags: sf | b}},
		},
		{
			name:  "set flags by address prefers a matching port",
			setup: []mptcp.Endpoint{sub("10.0.0.1"), {Addr: ip("10.0.0.1"), Port: 7000, Flags: s}},
			steps: []func(*mptcp.Client) error{
				setFlags(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7000, Flags: b}),
				setFlags(mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 7001, Flags: b}),
			},
			want: []mptcp.Endpoint{{ID: 1, Addr: ip("10.0.0.1"), Flags: sf | b}, {ID: 2, Addr: ip("10.0.0.1"), Port: 7000, Flags: s | b}},
		},
		{
			name:  "fullmesh refused on signal",
			setup: []mptcp.Endpoint{{Addr: ip("10.0.0.1"), Flags: s}},
			steps: []func(*mptcp.Client) error{setFlags(mptcp.Endpoint{ID: 1, Flags: fm})},
			errno: syscall.EINVAL, msg: "invalid addr flags",
		},
		{
			name:  "set flags of unknown id",
			steps: []func(*mptcp.Client) error{setFlags(mptcp.Endpoint{ID: 3, Flags: b})},
			errno: syscall.EINVAL, msg: "address not found",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := NewKernel()
			c := dial(t, k)
			for _, e := range tt.setup {
				if err := c.AddEndpoint(e); err != nil {
					t.Fatalf("setup %+v: %v", e, err)
				}
			}
			before := k.Endpoints()
			var err error
			for i, step := range tt.steps {
				if err = step(c); err != nil && i < len(tt.steps)-1 {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			checkErr(t, err, tt.errno, tt.msg)
			want := tt.want
			if tt.errno != 0 {
				want = before // a failure changes nothing
			}
			got, err := c.Endpoints()
			if err != nil {
				t.Fatalf("Endpoints: %v", err)
			}
			if diff := cmp.Diff(want, got, addrCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(want, k.Endpoints(), addrCmp, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Kernel.Endpoints disagrees with the dump (-want +got):\n%s", diff)
			}
		})
	}
}

func TestGetEndpoint(t *testing.T) {
	k := NewKernel()
	c := dial(t, k)
	e := mptcp.Endpoint{Addr: ip("2001:db8::1"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup, IfIndex: 3}
	if err := c.AddEndpoint(e); err != nil {
		t.Fatal(err)
	}
	got, err := c.Endpoint(1)
	if err != nil {
		t.Fatalf("Endpoint(1): %v", err)
	}
	if diff := cmp.Diff(withID(e, 1), got, addrCmp); diff != "" {
		t.Errorf("unexpected endpoint (-want +got):\n%s", diff)
	}
	_, err = c.Endpoint(2)
	checkErr(t, err, syscall.EINVAL, "address not found")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Endpoint(2) error %v is not os.ErrNotExist", err)
	}
}

func TestImplicitEndpoints(t *testing.T) {
	k := NewKernel()
	c := dial(t, k)
	id, err := k.AddImplicitEndpoint(ip("10.0.0.1"))
	if err != nil || id != 1 {
		t.Fatalf("AddImplicitEndpoint = %d, %v; want 1", id, err)
	}
	if id, err := k.AddImplicitEndpoint(ip("10.0.0.1")); err != nil || id != 1 {
		t.Fatalf("AddImplicitEndpoint again = %d, %v; want the same id 1", id, err)
	}
	// An explicit id cannot take over an implicit endpoint...
	checkErr(t, c.AddEndpoint(withID(sub("10.0.0.1"), 5)), syscall.EINVAL, "too many addresses or duplicate one: -22")
	// ...nor can fullmesh be set on it...
	checkErr(t, c.SetEndpointFlags(mptcp.Endpoint{ID: 1, Flags: mptcp.FlagFullmesh}), syscall.EINVAL, "invalid addr flags")
	// ...but an endpoint without id replaces it, keeping the id.
	checkErr(t, c.AddEndpoint(mptcp.Endpoint{Addr: ip("10.0.0.1"), Flags: mptcp.FlagSignal}), 0, "")
	want := []mptcp.Endpoint{{ID: 1, Addr: ip("10.0.0.1"), Flags: mptcp.FlagSignal}}
	if diff := cmp.Diff(want, k.Endpoints(), addrCmp); diff != "" {
		t.Errorf("unexpected endpoints (-want +got):\n%s", diff)
	}
}

func TestLimits(t *testing.T) {
	k := NewKernel()
	c := dial(t, k)
	check := func(subflows, rcv uint32) {
		t.Helper()
		want := mptcp.Limits{Subflows: u32(subflows), AddAddrAccepted: u32(rcv)}
		got, err := c.Limits()
		if err != nil {
			t.Fatalf("Limits: %v", err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("unexpected limits (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, k.Limits()); diff != "" {
			t.Errorf("unexpected Kernel.Limits (-want +got):\n%s", diff)
		}
	}
	check(2, 0)
	checkErr(t, c.SetLimits(mptcp.Limits{AddAddrAccepted: u32(3)}), 0, "")
	check(2, 3)
	checkErr(t, c.SetLimits(mptcp.Limits{Subflows: u32(8), AddAddrAccepted: u32(8)}), 0, "")
	check(8, 8)
	// Both are checked before either changes.
	checkErr(t, c.SetLimits(mptcp.Limits{Subflows: u32(9), AddAddrAccepted: u32(1)}), syscall.EINVAL, "limit greater than maximum (8)")
	check(8, 8)
	checkErr(t, c.FlushEndpoints(), 0, "")
	check(8, 8) // a flush keeps the limits
}

func TestListeningSockets(t *testing.T) {
	k := NewKernel()
	k.SetLocalAddrs(ip("10.0.0.1"), ip("2001:db8::1"))
	c := dial(t, k)
	l := listen(t, k)
	sig := func(addr string, port uint16) mptcp.Endpoint {
		return mptcp.Endpoint{Addr: ip(addr), Port: port, Flags: mptcp.FlagSignal}
	}
	checkErr(t, c.AddEndpoint(sig("10.0.0.1", 7000)), 0, "")
	checkErr(t, c.AddEndpoint(sig("10.0.0.1", 7000)), syscall.EADDRINUSE, "create listen socket error: -98")
	checkErr(t, c.AddEndpoint(sig("10.0.0.2", 7000)), syscall.EADDRNOTAVAIL, "create listen socket error: -99")
	checkErr(t, c.AddEndpoint(sig("0.0.0.0", 7000)), syscall.EADDRINUSE, "create listen socket error: -98")
	checkErr(t, c.AddEndpoint(sig("2001:db8::1", 7000)), 0, "")
	checkErr(t, c.AddEndpoint(sub("10.0.0.2")), 0, "") // no port: no listener, no check
	checkErr(t, c.DeleteEndpoint(1, netip.Addr{}), 0, "")
	checkErr(t, c.FlushEndpoints(), 0, "")

	ev := func(t mptcp.EventType, addr string, port uint16) mptcp.Event {
		return Complete(mptcp.Event{Type: t, Saddr: ip(addr), Sport: port})
	}
	want := []mptcp.Event{
		ev(mptcp.EventListenerCreated, "10.0.0.1", 7000),
		ev(mptcp.EventListenerCreated, "2001:db8::1", 7000),
		ev(mptcp.EventListenerClosed, "10.0.0.1", 7000),
		ev(mptcp.EventListenerClosed, "2001:db8::1", 7000),
	}
	if diff := cmp.Diff(want, receiveN(t, l, len(want)), eventCmp...); diff != "" {
		t.Errorf("unexpected events (-want +got):\n%s", diff)
	}
}

func TestHideFamily(t *testing.T) {
	k := NewKernel()
	k.HideFamily()
	if _, err := k.Dial(); !errors.Is(err, mptcp.ErrNotSupported) {
		t.Errorf("Dial error %v is not ErrNotSupported", err)
	}
	if _, err := k.ListenEvents(); !errors.Is(err, mptcp.ErrNotSupported) {
		t.Errorf("ListenEvents error %v is not ErrNotSupported", err)
	}
}

func TestOpsAndFailures(t *testing.T) {
	k := NewKernel()
	c := dial(t, k)
	if err := c.AddEndpoint(sub("10.0.0.1")); err != nil {
		t.Fatal(err)
	}
	k.ResetOps()

	// Reads are not recorded.
	if _, err := c.Endpoints(); err != nil {
		t.Fatal(err)
	}
	if ops := k.Ops(); len(ops) != 0 {
		t.Fatalf("reads recorded as ops: %v", ops)
	}

	k.FailNext(mptcp.MPTCP_PM_CMD_ADD_ADDR, syscall.EBUSY)
	checkErr(t, c.AddEndpoint(sub("10.0.0.2")), syscall.EBUSY, "")
	checkErr(t, c.AddEndpoint(sub("10.0.0.2")), 0, "")
	k.SetFailure(mptcp.MPTCP_PM_CMD_SET_LIMITS, syscall.EPERM)
	err := c.SetLimits(mptcp.Limits{Subflows: u32(4)})
	checkErr(t, err, syscall.EPERM, "")
	if !errors.Is(err, os.ErrPermission) {
		t.Errorf("error %v is not os.ErrPermission", err)
	}
	k.SetFailure(mptcp.MPTCP_PM_CMD_SET_LIMITS, 0)
	checkErr(t, c.SetLimits(mptcp.Limits{Subflows: u32(4)}), 0, "")

	want := []string{
		"ADD_ADDR 10.0.0.2 id 0 subflow: EBUSY",
		"ADD_ADDR 10.0.0.2 id 0 subflow: ok",
		"SET_LIMITS subflows 4: EPERM",
		"SET_LIMITS subflows 4: ok",
	}
	var got []string
	for _, op := range k.Ops() {
		got = append(got, op.String())
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("unexpected ops (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]mptcp.Endpoint{withID(sub("10.0.0.1"), 1), withID(sub("10.0.0.2"), 2)}, k.Endpoints(), addrCmp); diff != "" {
		t.Errorf("an injected failure changed the table (-want +got):\n%s", diff)
	}
}

func TestOpString(t *testing.T) {
	tests := []struct {
		op   Op
		want string
	}{
		{Op{Cmd: mptcp.MPTCP_PM_CMD_DEL_ADDR, Endpoint: mptcp.Endpoint{ID: 3}, Errno: syscall.EINVAL}, "DEL_ADDR id 3: EINVAL"},
		{Op{Cmd: mptcp.MPTCP_PM_CMD_FLUSH_ADDRS}, "FLUSH_ADDRS: ok"},
		{Op{Cmd: mptcp.MPTCP_PM_CMD_ADD_ADDR, Endpoint: mptcp.Endpoint{ID: 2, Addr: ip("10.0.0.1"), Port: 7000,
			Flags: mptcp.FlagSignal, IfIndex: 4}}, "ADD_ADDR 10.0.0.1 port 7000 id 2 signal ifindex 4: ok"},
		{Op{Cmd: mptcp.MPTCP_PM_CMD_REMOVE, Token: 0xabc, LocalID: 5}, "REMOVE token 00000abc id 5: ok"},
		{Op{Cmd: mptcp.MPTCP_PM_CMD_SUBFLOW_DESTROY, Token: 1, Endpoint: mptcp.Endpoint{Addr: ip("10.0.0.1"), Port: 1},
			Remote: netip.MustParseAddrPort("10.0.0.2:2")}, "SUBFLOW_DESTROY token 00000001 10.0.0.1 port 1 id 0 remote 10.0.0.2:2: ok"},
		{Op{Cmd: 99, Errno: syscall.Errno(0xffff)}, "CMD(99): errno 65535"},
	}
	for _, tt := range tests {
		if got := tt.op.String(); got != tt.want {
			t.Errorf("%#v.String() = %q, want %q", tt.op, got, tt.want)
		}
	}
}

// TestConcurrentUse runs clients, listeners and Inject at once (run with
// -race).
func TestConcurrentUse(t *testing.T) {
	k := NewKernel()
	ln := listen(t, k)
	const workers, rounds = 4, 50
	done := make(chan error, workers+1)
	for w := range workers {
		go func() {
			c, err := k.Dial()
			if err != nil {
				done <- err
				return
			}
			defer c.Close()
			a := netip.AddrFrom4([4]byte{10, 9, byte(w), 1})
			for range rounds {
				_ = c.AddEndpoint(mptcp.Endpoint{Addr: a, Flags: mptcp.FlagSubflow})
				if _, err := c.Endpoints(); err != nil {
					done <- err
					return
				}
				_ = c.FlushEndpoints()
			}
			done <- nil
		}()
	}
	go func() {
		for i := range rounds {
			k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: mptcp.Token(i)})
		}
		done <- nil
	}()
	for range workers + 1 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := len(receiveN(t, ln, rounds)); got != rounds {
		t.Errorf("got %d events, want %d", got, rounds)
	}
	checkInvariants(t, k)
}
