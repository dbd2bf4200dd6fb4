package srcroute

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeKernel holds marked routes and rules in memory and logs each change.
type fakeKernel struct {
	have    installed
	ops     []string
	fail    map[string]error // by op, as logged
	dumpErr error
	closed  int
}

// newFake holds copies, so that its changes leave the fixtures alone.
func newFake(routes []Route, rules []Rule) *fakeKernel {
	return &fakeKernel{have: installed{routes: slices.Clone(routes), rules: slices.Clone(rules)}}
}

func (k *fakeKernel) dump() (installed, error) {
	return installed{routes: slices.Clone(k.have.routes), rules: slices.Clone(k.have.rules)}, k.dumpErr
}

func (k *fakeKernel) addRoute(r Route) error {
	return fakeOp(k, "add route "+r.String(), &k.have.routes, r, true)
}
func (k *fakeKernel) delRoute(r Route) error {
	return fakeOp(k, "del route "+r.String(), &k.have.routes, r, false)
}
func (k *fakeKernel) addRule(r Rule) error {
	return fakeOp(k, "add rule "+r.String(), &k.have.rules, r, true)
}
func (k *fakeKernel) delRule(r Rule) error {
	return fakeOp(k, "del rule "+r.String(), &k.have.rules, r, false)
}
func (k *fakeKernel) close() error { k.closed++; return nil }

func fakeOp[T comparable](k *fakeKernel, op string, set *[]T, v T, add bool) error {
	k.ops = append(k.ops, op)
	if err := k.fail[op]; err != nil {
		return err
	}
	i := slices.Index(*set, v)
	switch {
	case add && i >= 0:
		return syscall.EEXIST
	case add:
		*set = append(*set, v)
	case i < 0:
		return errGone
	default:
		*set = slices.Delete(*set, i, i+1)
	}
	return nil
}

func TestApplyOrderAndIdempotence(t *testing.T) {
	k := newFake(spec2Routes, spec2Rules)
	m := newManager(k, nil)
	changes, err := m.Apply([]Spec{with(spec1, func(s *Spec) { s.Gateways = s.Gateways[:1]; s.Addrs = s.Addrs[:1] })})
	if err != nil {
		t.Fatal(err)
	}
	wantOps := []string{
		"del rule priority 1002 from 10.2.0.2/32 lookup 102",
		"del route 10.2.0.0/24 ifindex 3 scope link src 10.2.0.2 table 102",
		"del route default via 10.2.0.1 ifindex 3 table 102",
		"add route 10.1.0.0/24 ifindex 2 scope link src 10.1.0.20 table 101",
		"add route default via 10.1.0.1 ifindex 2 table 101",
		"add rule priority 1001 from 10.1.0.20/32 lookup 101",
	}
	if d := cmp.Diff(wantOps, k.ops); d != "" {
		t.Errorf("unexpected operations (-want +got):\n%s", d)
	}
	want := Changes{
		RulesRemoved:  spec2Rules,
		RoutesRemoved: spec2Routes,
		RoutesAdded:   []Route{spec1Routes[0], spec1Routes[2]},
		RulesAdded:    spec1Rules[:1],
	}
	if d := cmp.Diff(want, changes, cmpOpts...); d != "" {
		t.Errorf("unexpected changes (-want +got):\n%s", d)
	}

	k.ops = nil
	changes, err = m.Apply([]Spec{with(spec1, func(s *Spec) { s.Gateways = s.Gateways[:1]; s.Addrs = s.Addrs[:1] })})
	if err != nil || !changes.Empty() || len(k.ops) != 0 {
		t.Errorf("second Apply: changes %+v, operations %q, error %v; want none", changes, k.ops, err)
	}
}

func TestApplyGoesOnAfterFailuresAndNamesThem(t *testing.T) {
	k := &fakeKernel{fail: map[string]error{
		"add route 10.1.0.0/24 ifindex 2 scope link src 10.1.0.20 table 101": syscall.EEXIST,
		"add rule priority 1002 from 10.2.0.2/32 lookup 102":                 syscall.EPERM,
	}}
	m := newManager(k, nil)
	changes, err := m.Apply([]Spec{spec1, spec2})
	if err == nil {
		t.Fatal("Apply succeeded, want the two failures")
	}
	for _, w := range []string{
		"srcroute: adding route 10.1.0.0/24 ifindex 2 scope link src 10.1.0.20 table 101: file exists",
		"srcroute: adding rule priority 1002 from 10.2.0.2/32 lookup 102: operation not permitted",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q\nlacks %q", err, w)
		}
	}
	if !errors.Is(err, syscall.EEXIST) || !errors.Is(err, syscall.EPERM) {
		t.Errorf("error %v does not wrap EEXIST and EPERM", err)
	}
	// Everything else went in, and only that is reported.
	if got, want := len(changes.RoutesAdded)+len(changes.RulesAdded), len(spec1Routes)+len(spec2Routes)-1+len(spec1Rules)+len(spec2Rules)-1; got != want {
		t.Errorf("%d objects reported added, want %d: %+v", got, want, changes)
	}
	if slices.Contains(changes.RoutesAdded, spec1Routes[0]) || slices.Contains(changes.RulesAdded, spec2Rules[0]) {
		t.Errorf("a failed object is reported added: %+v", changes)
	}
	// The next Apply retries just the failed ones.
	k.fail, k.ops = nil, nil
	if _, err := m.Apply([]Spec{spec1, spec2}); err != nil {
		t.Fatal(err)
	}
	wantOps := []string{
		"add route 10.1.0.0/24 ifindex 2 scope link src 10.1.0.20 table 101",
		"add rule priority 1002 from 10.2.0.2/32 lookup 102",
	}
	if d := cmp.Diff(wantOps, k.ops); d != "" {
		t.Errorf("unexpected operations of the retry (-want +got):\n%s", d)
	}
}

func TestRemovingWhatIsAlreadyGoneIsNoError(t *testing.T) {
	k := newFake(spec2Routes, spec2Rules)
	k.fail = map[string]error{"del route default via 10.2.0.1 ifindex 3 table 102": fmt.Errorf("%w: no such process", errGone)}
	m := newManager(k, nil)
	changes, err := m.Apply(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(k.ops) != 3 {
		t.Errorf("operations %q, want the removal of all three objects", k.ops)
	}
	want := Changes{RulesRemoved: spec2Rules, RoutesRemoved: spec2Routes[:1]}
	if d := cmp.Diff(want, changes, cmpOpts...); d != "" {
		t.Errorf("unexpected changes (-want +got):\n%s", d)
	}
}

func TestApplyChangesNothingOnInvalidInputOrDumpFailure(t *testing.T) {
	k := newFake(spec2Routes, spec2Rules)
	m := newManager(k, nil)
	if _, err := m.Apply([]Spec{with(spec1, func(s *Spec) { s.Table = 254 })}); err == nil {
		t.Error("Apply accepted the main table")
	}
	k.dumpErr = errors.New("dump broke")
	if _, err := m.Apply(nil); !errors.Is(err, k.dumpErr) {
		t.Errorf("Apply with a failing dump: %v, want its error", err)
	}
	if len(k.ops) != 0 {
		t.Errorf("operations %q, want none", k.ops)
	}
}

func TestClosedManager(t *testing.T) {
	k := &fakeKernel{}
	m := newManager(k, nil)
	for range 2 {
		if err := m.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if k.closed != 1 {
		t.Errorf("kernel closed %d times, want 1", k.closed)
	}
	if _, err := m.Apply(nil); !errors.Is(err, errClosed) {
		t.Errorf("Apply after Close: %v, want %v", err, errClosed)
	}
	if err := m.Clear(); !errors.Is(err, errClosed) {
		t.Errorf("Clear after Close: %v, want %v", err, errClosed)
	}
}
