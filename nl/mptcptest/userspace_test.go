package mptcptest

import (
	"errors"
	"net/netip"
	"os"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

var addrPortCmp = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

// userspaceSetup registers a userspace-PM connection through an injected
// CREATED event, as the kernel would announce it.
func userspaceSetup(t *testing.T) (*Kernel, *mptcp.Client, *listener, mptcp.Token) {
	t.Helper()
	k := NewKernel()
	if err := k.SetPathManager("userspace"); err != nil {
		t.Fatal(err)
	}
	c := dial(t, k)
	ln := listen(t, k)
	const tok = mptcp.Token(0xabc)
	for _, typ := range []mptcp.EventType{mptcp.EventCreated, mptcp.EventEstablished} {
		k.Inject(mptcp.Event{Type: typ, Token: tok,
			Saddr: ip("10.0.0.1"), Sport: 40000, Daddr: ip("10.0.0.2"), Dport: 80})
	}
	receiveN(t, ln, 2)
	return k, c, ln, tok
}

func TestAnnounceAndRemove(t *testing.T) {
	k, c, _, tok := userspaceSetup(t)
	sig := mptcp.Endpoint{ID: 1, Addr: ip("10.0.0.3"), Flags: mptcp.FlagSignal}
	checkErr(t, c.Announce(tok, sig), 0, "")
	checkErr(t, c.Announce(tok, sig), 0, "") // the same address and id again
	checkErr(t, c.Announce(tok, withID(sig, 2)), syscall.EINVAL, "did not match address and id")
	checkErr(t, c.Announce(tok, mptcp.Endpoint{ID: 1, Addr: ip("10.0.0.4"), Flags: mptcp.FlagSignal}), syscall.EINVAL, "did not match address and id")
	checkErr(t, c.Announce(tok, withID(sig, 0)), syscall.EINVAL, "invalid addr id")
	checkErr(t, c.Announce(tok, mptcp.Endpoint{ID: 3, Addr: ip("10.0.0.5")}), syscall.EINVAL, "invalid addr flags")

	got, err := c.ConnectionEndpoints(tok)
	if err != nil {
		t.Fatalf("ConnectionEndpoints: %v", err)
	}
	if diff := cmp.Diff([]mptcp.Endpoint{sig}, got, addrCmp); diff != "" {
		t.Errorf("unexpected connection endpoints (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]mptcp.Endpoint{sig}, k.ConnectionEndpoints(tok), addrCmp); diff != "" {
		t.Errorf("unexpected Kernel.ConnectionEndpoints (-want +got):\n%s", diff)
	}

	checkErr(t, c.Remove(tok, 1), 0, "")
	checkErr(t, c.Remove(tok, 1), syscall.EINVAL, "address with id 1 not found")
	checkErr(t, c.Remove(tok, 0), 0, "") // the initial subflow still uses id 0
	if got := k.ConnectionEndpoints(tok); len(got) != 0 {
		t.Errorf("endpoints %v left after Remove", got)
	}
}

func TestUserspaceTokens(t *testing.T) {
	k, c, _, tok := userspaceSetup(t)
	k.AddConnection(Connection{Token: 0xdef, Local: netip.MustParseAddrPort("10.0.0.1:1"),
		Remote: netip.MustParseAddrPort("10.0.0.2:2")}) // in-kernel PM
	sig := mptcp.Endpoint{ID: 1, Addr: ip("10.0.0.3"), Flags: mptcp.FlagSignal}
	err := c.Announce(0x123, sig)
	checkErr(t, err, syscall.EINVAL, "invalid token")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v is not os.ErrNotExist", err)
	}
	checkErr(t, c.Announce(0xdef, sig), syscall.EINVAL, "userspace PM not selected")
	_, err = c.ConnectionEndpoints(0x123)
	checkErr(t, err, syscall.EINVAL, "invalid token")

	k.Inject(mptcp.Event{Type: mptcp.EventClosed, Token: tok})
	checkErr(t, c.Announce(tok, sig), syscall.EINVAL, "invalid token")
}

func TestSubflowCreateDestroy(t *testing.T) {
	k, c, ln, tok := userspaceSetup(t)
	k.SetLocalAddrs(ip("10.0.0.1"), ip("10.0.0.4"))
	remote := netip.MustParseAddrPort("10.0.0.2:80")
	local := mptcp.Endpoint{ID: 2, Addr: ip("10.0.0.4"), Flags: mptcp.FlagBackup}

	checkErr(t, c.CreateSubflow(tok, local, remote), 0, "")
	sf := Subflow{Local: netip.MustParseAddrPort("10.0.0.4:32768"), Remote: remote, LocalID: 2, Backup: true}
	wantSubflows := []Subflow{{Local: netip.MustParseAddrPort("10.0.0.1:40000"), Remote: remote}, sf}
	if diff := cmp.Diff(wantSubflows, k.Subflows(tok), addrPortCmp); diff != "" {
		t.Errorf("unexpected subflows (-want +got):\n%s", diff)
	}
	wantEv := Complete(subflowEvent(mptcp.EventSubEstablished, tok, sf))
	if diff := cmp.Diff([]mptcp.Event{wantEv}, receiveN(t, ln, 1), eventCmp...); diff != "" {
		t.Errorf("unexpected event (-want +got):\n%s", diff)
	}
	wantEps := []mptcp.Endpoint{{ID: 2, Addr: ip("10.0.0.4"), Flags: mptcp.FlagSubflow | mptcp.FlagBackup}}
	if diff := cmp.Diff(wantEps, k.ConnectionEndpoints(tok), addrCmp); diff != "" {
		t.Errorf("unexpected connection endpoints (-want +got):\n%s", diff)
	}

	checkErr(t, c.CreateSubflow(tok, mptcp.Endpoint{ID: 3, Addr: ip("10.0.0.5")}, remote), syscall.EADDRNOTAVAIL, "connect error: -99")
	checkErr(t, c.CreateSubflow(tok, mptcp.Endpoint{ID: 3, Addr: ip("10.0.0.4"), Flags: mptcp.FlagSignal}, remote), syscall.EINVAL, "invalid addr flags")
	checkErr(t, c.CreateSubflow(tok, mptcp.Endpoint{ID: 3, Addr: ip("2001:db8::1")}, remote), syscall.EINVAL, "families mismatch")
	checkErr(t, c.CreateSubflow(tok, mptcp.Endpoint{ID: 3, Addr: ip("10.0.0.4")}, remote), syscall.EINVAL, "did not match address and id")

	checkErr(t, c.SetSubflowBackup(tok, netip.AddrPortFrom(ip("10.0.0.4"), 0), remote, false), 0, "")
	if got := k.Subflows(tok)[1].Backup; got {
		t.Errorf("subflow still backup after SetSubflowBackup(false)")
	}
	checkErr(t, c.SetSubflowBackup(tok, netip.MustParseAddrPort("10.0.0.9:1"), remote, true), syscall.EINVAL, "subflow not found")

	err := c.DestroySubflow(tok, netip.MustParseAddrPort("10.0.0.4:1"), remote)
	checkErr(t, err, syscall.ESRCH, "subflow not found")
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %v is not os.ErrNotExist", err)
	}
	checkErr(t, c.DestroySubflow(tok, sf.Local, remote), 0, "")
	sf.Backup = false
	wantEv = Complete(subflowEvent(mptcp.EventSubClosed, tok, sf))
	if diff := cmp.Diff([]mptcp.Event{wantEv}, receiveN(t, ln, 1), eventCmp...); diff != "" {
		t.Errorf("unexpected event (-want +got):\n%s", diff)
	}
	if got := len(k.Subflows(tok)); got != 1 {
		t.Errorf("%d subflows after destroy, want 1", got)
	}
	if got := k.ConnectionEndpoints(tok); len(got) != 0 {
		t.Errorf("endpoints %v left after destroy", got)
	}

	var ops []string
	for _, op := range k.Ops() {
		ops = append(ops, op.String())
	}
	wantOps := []string{
		"SUBFLOW_CREATE token 00000abc 10.0.0.4 id 2 backup remote 10.0.0.2:80: ok",
		"SUBFLOW_CREATE token 00000abc 10.0.0.5 id 3 remote 10.0.0.2:80: EADDRNOTAVAIL",
		"SUBFLOW_CREATE token 00000abc 10.0.0.4 id 3 signal remote 10.0.0.2:80: EINVAL",
		"SUBFLOW_CREATE token 00000abc 2001:db8::1 id 3 remote 10.0.0.2:80: EINVAL",
		"SUBFLOW_CREATE token 00000abc 10.0.0.4 id 3 remote 10.0.0.2:80: EINVAL",
		"SET_FLAGS token 00000abc 10.0.0.4 id 0 remote 10.0.0.2:80: ok",
		"SET_FLAGS token 00000abc 10.0.0.9 port 1 id 0 backup remote 10.0.0.2:80: EINVAL",
		"SUBFLOW_DESTROY token 00000abc 10.0.0.4 port 1 id 0 remote 10.0.0.2:80: ESRCH",
		"SUBFLOW_DESTROY token 00000abc 10.0.0.4 port 32768 id 0 remote 10.0.0.2:80: ok",
	}
	if diff := cmp.Diff(wantOps, ops); diff != "" {
		t.Errorf("unexpected ops (-want +got):\n%s", diff)
	}
}

func TestSubflowNeedsEstablished(t *testing.T) {
	k := NewKernel()
	c := dial(t, k)
	if err := k.SetPathManager("userspace"); err != nil {
		t.Fatal(err)
	}
	ev := mptcp.Event{Type: mptcp.EventCreated, Token: 1, Saddr: ip("10.0.0.1"), Sport: 1, Daddr: ip("10.0.0.2"), Dport: 2}
	k.Inject(ev)
	local, remote := mptcp.Endpoint{ID: 2, Addr: ip("10.0.0.3")}, netip.MustParseAddrPort("10.0.0.2:2")
	checkErr(t, c.CreateSubflow(1, local, remote), syscall.ENOTCONN, "connect error: -107")
	ev.Type = mptcp.EventEstablished
	k.Inject(ev)
	checkErr(t, c.CreateSubflow(1, local, remote), 0, "")
}

func TestSetPathManager(t *testing.T) {
	k := NewKernel()
	if err := k.SetPathManager("fullmesh"); err == nil {
		t.Error("SetPathManager accepted an unknown path manager")
	}
}
