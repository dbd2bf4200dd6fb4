package userspace_test

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

// localOn returns the first usable IPv4 address of link.
func localOn(st pm.State, link string) pm.LocalAddr {
	for a := range st.LocalAddrs() {
		if a.Link == link && a.Addr.Is4() {
			return a
		}
	}
	panic("no usable IPv4 address on " + link)
}

func TestCreateSubflow(t *testing.T) {
	h, r := start(t, userspacetest.Options{})
	h.SetNetwork(twoLinks())
	r.takeTrace()
	var wlan pm.LocalAddr
	var pending []pm.Subflow
	r.onEstablished = func(env pm.Env, c pm.Connection) {
		wlan = localOn(env.State, "wlan0")
		if err := env.Commands.CreateSubflow(c.Token(), wlan, c.Remote()); err != nil {
			t.Errorf("CreateSubflow: %v", err)
		}
		pending = slices.Collect(c.Subflows())
	}
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Settle()

	if wlan.ID == 0 {
		t.Fatalf("usable address %v has id 0", wlan.Addr)
	}
	wantPending := []pm.Subflow{
		{Local: userspacetest.Addr(local), Remote: userspacetest.Addr(remote), IfIndex: 2},
		{Local: netip.AddrPortFrom(wlan.Addr, 0), Remote: userspacetest.Addr(remote), LocalID: wlan.ID, IfIndex: 3, Pending: true},
	}
	if diff := cmp.Diff(wantPending, pending, cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("subflows right after CreateSubflow (-want +got):\n%s", diff)
	}
	sfs := h.Kernel.Subflows(1)
	if len(sfs) != 2 || sfs[1].Local.Addr() != wlan.Addr || sfs[1].LocalID != wlan.ID || sfs[1].IfIndex != 3 {
		t.Fatalf("kernel's subflows = %+v, want the initial one and one from %v id %d on ifindex 3", sfs, wlan.Addr, wlan.ID)
	}
	want := []string{
		"new 00000001 client 10.0.1.2:40000->192.0.2.1:443",
		"established 00000001",
		fmt.Sprintf("sub up 00000001 %v->192.0.2.1:443 id %d/0 if 3", sfs[1].Local, wlan.ID),
	}
	if diff := cmp.Diff(want, r.takeTrace()); diff != "" {
		t.Errorf("callbacks (-want +got):\n%s", diff)
	}
}

// The initial subflow's address is id 0 on its connection: a subflow
// from it to another peer address goes out with id 0.
func TestCreateSubflowFromInitialAddress(t *testing.T) {
	h, r := start(t, userspacetest.Options{})
	h.SetNetwork(twoLinks())
	r.onEstablished = func(env pm.Env, c pm.Connection) {
		_ = env.Commands.CreateSubflow(c.Token(), localOn(env.State, "eth0"), userspacetest.Addr("192.0.2.7:443"))
	}
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Settle()
	ops := h.Kernel.Ops()
	if len(ops) != 1 || ops[0].Cmd != mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE || ops[0].Endpoint.ID != 0 || ops[0].Errno != 0 {
		t.Errorf("ops = %v, want one successful SUBFLOW_CREATE with id 0", ops)
	}
}

// One address has one id on every connection, and keeps it while usable.
func TestAnnounceIDs(t *testing.T) {
	h, r := start(t, userspacetest.Options{})
	h.SetNetwork(twoLinks())
	r.onEstablished = func(env pm.Env, c pm.Connection) {
		if err := env.Commands.Announce(c.Token(), localOn(env.State, "wlan0")); err != nil {
			t.Errorf("Announce: %v", err)
		}
	}
	for tok := range mptcp.Token(3) {
		h.Open(tok+1, userspacetest.Addr(local), netip.AddrPortFrom(netip.MustParseAddr("192.0.2.9"), uint16(50000+tok)), true)
	}
	h.Settle()
	var ids []mptcp.ID
	for tok := range mptcp.Token(3) {
		eps := h.Kernel.ConnectionEndpoints(tok + 1)
		if len(eps) != 1 || eps[0].Addr != netip.MustParseAddr("10.0.2.2") || eps[0].Flags&mptcp.FlagSignal == 0 {
			t.Fatalf("token %d: kernel's endpoints = %v, want 10.0.2.2 signal", tok+1, eps)
		}
		ids = append(ids, eps[0].ID)
	}
	if ids[0] == 0 || ids[1] != ids[0] || ids[2] != ids[0] {
		t.Errorf("10.0.2.2 announced with ids %v, want one non-zero id", ids)
	}
}

// Commands that fail are logged with the token, returned, counted, and
// leave the engine running; those for a connection that closed meanwhile
// are debug news only.
func TestCommandErrors(t *testing.T) {
	tests := []struct {
		name      string
		fail      syscall.Errno // SUBFLOW_CREATE fails with it
		closeToo  bool          // CLOSED is queued right behind ESTABLISHED
		otherTok  bool          // the command names a token the engine does not know
		wantIs    error
		wantLog   string
		wantLevel slog.Level
		wantOps   int
		wantCount uint64 // Stats.CommandErrors
	}{
		{name: "kernel refuses", fail: syscall.EADDRNOTAVAIL, wantIs: syscall.EADDRNOTAVAIL,
			wantLog: "userspace PM command failed", wantLevel: slog.LevelWarn, wantOps: 1, wantCount: 1},
		{name: "connection closed in the kernel", closeToo: true, wantIs: pm.ErrNoConnection,
			wantLog: "command for a closed connection failed", wantLevel: slog.LevelDebug, wantOps: 1, wantCount: 1},
		{name: "connection unknown", otherTok: true, wantIs: pm.ErrNoConnection,
			wantLog: "command for a closed connection dropped", wantLevel: slog.LevelDebug},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &logRecords{}
			h, r := start(t, userspacetest.Options{Log: slog.New(logs)})
			h.SetNetwork(twoLinks())
			var got error
			r.onEstablished = func(env pm.Env, c pm.Connection) {
				tok := c.Token()
				if tt.otherTok {
					tok = 99
				}
				got = env.Commands.CreateSubflow(tok, localOn(env.State, "wlan0"), c.Remote())
			}
			if tt.fail != 0 {
				h.Kernel.FailNext(mptcp.MPTCP_PM_CMD_SUBFLOW_CREATE, tt.fail)
			}
			evs := userspacetest.OpenEvents(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
			if tt.closeToo {
				evs = append(evs, mptcp.Event{Type: mptcp.EventClosed, Token: 1})
			}
			h.Inject(evs...)
			h.Settle()

			if !errors.Is(got, tt.wantIs) {
				t.Errorf("CreateSubflow error = %v, want one that Is %v", got, tt.wantIs)
			}
			rec, ok := logs.find(tt.wantLog)
			if !ok {
				t.Fatalf("no log %q", tt.wantLog)
			}
			if rec.Level != tt.wantLevel || attr(rec, "token") == "" {
				t.Errorf("log %q at %v with token %q, want level %v and a token", rec.Message, rec.Level, attr(rec, "token"), tt.wantLevel)
			}
			if ops := h.Kernel.Ops(); len(ops) != tt.wantOps {
				t.Errorf("kernel got %v, want %d requests", ops, tt.wantOps)
			}
			if s := h.Engine.Stats(); s.CommandErrors != tt.wantCount {
				t.Errorf("Stats().CommandErrors = %d, want %d", s.CommandErrors, tt.wantCount)
			}

			// The loop goes on: the next connection is served.
			r.onEstablished = func(env pm.Env, c pm.Connection) {
				got = env.Commands.CreateSubflow(c.Token(), localOn(env.State, "wlan0"), c.Remote())
			}
			h.Open(2, userspacetest.Addr(local), userspacetest.Addr("192.0.2.1:444"), false)
			h.Settle()
			if got != nil || len(h.Kernel.Subflows(2)) != 2 {
				t.Errorf("next connection: CreateSubflow = %v, kernel's subflows %v; want a second subflow", got, h.Kernel.Subflows(2))
			}
		})
	}
}

// SetBackup changes the engine's record (the kernel sends no event for
// it); DestroySubflow's effect comes back as SUB_CLOSED.
func TestBackupAndDestroy(t *testing.T) {
	h, r := start(t, userspacetest.Options{})
	h.SetNetwork(twoLinks())
	r.onEstablished = func(env pm.Env, c pm.Connection) {
		_ = env.Commands.CreateSubflow(c.Token(), localOn(env.State, "wlan0"), c.Remote())
		for s := range c.Subflows() {
			if s.Pending {
				if err := env.Commands.DestroySubflow(c.Token(), s); err == nil {
					t.Errorf("DestroySubflow of a pending subflow succeeded")
				}
			}
		}
	}
	var after []pm.Subflow
	r.onSubflowUp = func(env pm.Env, c pm.Connection, s pm.Subflow) {
		if err := env.Commands.SetBackup(c.Token(), s, true); err != nil {
			t.Errorf("SetBackup: %v", err)
		}
		after = slices.Collect(c.Subflows())
		if err := env.Commands.DestroySubflow(c.Token(), s); err != nil {
			t.Errorf("DestroySubflow: %v", err)
		}
	}
	h.Open(1, userspacetest.Addr(local), userspacetest.Addr(remote), false)
	h.Settle()
	if len(after) != 2 || !after[1].Backup || after[0].Backup {
		t.Errorf("subflows after SetBackup = %+v, want the second one backup", after)
	}
	if sfs := h.Kernel.Subflows(1); len(sfs) != 1 {
		t.Errorf("kernel's subflows after DestroySubflow = %+v, want the initial one", sfs)
	}
	trace := r.takeTrace()
	if last := trace[len(trace)-1]; last != fmt.Sprintf("sub down 00000001 %v->192.0.2.1:443 id %d/0 if 3 backup", after[1].Local, after[1].LocalID) {
		t.Errorf("last callback %q, want the subflow's SubflowClosed", last)
	}
}
