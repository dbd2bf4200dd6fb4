package daemon

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
)

// The view follows the kernel through the writes that succeed, and is
// what a dump would say.
func TestKernelView(t *testing.T) {
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v := &kernelView{Kernel: c}
	a, b := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")
	two, three := uint32(2), uint32(3)
	steps := []struct {
		name string
		do   func() error
		fail bool
	}{
		{"dump", func() error { _, err := v.Endpoints(); return err }, false},
		{"add", func() error { return v.AddEndpoint(mptcp.Endpoint{ID: 1, Addr: a, Flags: mptcp.FlagSubflow}) }, false},
		{"add another", func() error { return v.AddEndpoint(mptcp.Endpoint{ID: 2, Addr: b, Flags: mptcp.FlagSignal}) }, false},
		{"add a duplicate", func() error { return v.AddEndpoint(mptcp.Endpoint{ID: 3, Addr: a, Flags: mptcp.FlagSubflow}) }, true},
		{"set flags", func() error {
			return v.SetEndpointFlags(mptcp.Endpoint{ID: 1, Flags: mptcp.FlagSubflow | mptcp.FlagBackup})
		}, false},
		{"delete", func() error { return v.DeleteEndpoint(2, b) }, false},
		{"delete again", func() error { return v.DeleteEndpoint(2, b) }, true},
		{"read limits", func() error { _, err := v.Limits(); return err }, false},
		{"set a limit", func() error { return v.SetLimits(mptcp.Limits{Subflows: &three}) }, false},
	}
	for _, s := range steps {
		err := s.do()
		if (err != nil) != s.fail {
			t.Fatalf("%s: %v", s.name, err)
		}
		table, _ := v.snapshot()
		if diff := cmp.Diff(k.Endpoints(), table, cmpopts.EquateEmpty(), cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
			t.Errorf("after %s: view (-kernel +view):\n%s", s.name, diff)
		}
	}
	if _, l := v.snapshot(); *l.Subflows != three || l.AddAddrAccepted == nil || *l.AddAddrAccepted != 0 {
		t.Errorf("limits %v/%v, want subflows 3 and the kernel's add_addr_accepted", l.Subflows, l.AddAddrAccepted)
	}
	// A refused write leaves the view alone.
	k.FailNext(mptcp.MPTCP_PM_CMD_SET_LIMITS, syscall.EPERM)
	if err := v.SetLimits(mptcp.Limits{Subflows: &two}); err == nil {
		t.Fatal("SetLimits did not fail")
	}
	if _, l := v.snapshot(); *l.Subflows != three {
		t.Errorf("subflows %d after a refused write, want 3", *l.Subflows)
	}
}
