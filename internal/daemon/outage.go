package daemon

import (
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
)

// outageWatch decides, in the in-kernel mode, when the endpoints kept
// through an outage (pm/outage.go) may go. After a pass that leaves some
// kept it lists the connections at once, then every outageRecheck once
// paths are back and every outageIdleRecheck while the outage lasts (a
// connection that ends lets them go).
type outageWatch struct {
	list  func() ([]mptcpdiag.Connection, error) // the kernel's connections
	grace time.Duration                          // outage-hold: the longest wait for new subflows
	timer *time.Timer

	kept, inDoubt []mptcp.Endpoint // the last pass's
	plan          pm.Plan
	back          time.Time // when the plan stopped being empty; zero during the outage
}

const (
	outageRecheck     = 50 * time.Millisecond
	outageIdleRecheck = time.Second
)

// startOutageWatch turns keeping on in rec; nil when grace is 0
// (outage-hold=off) or there is no diag (dialDiag), without which kept
// endpoints could outlive every connection that needed them.
func startOutageWatch(grace time.Duration, rec *pm.Reconciler, diag *mptcpdiag.Client) *outageWatch {
	if grace <= 0 || diag == nil {
		return nil
	}
	return newOutageWatch(grace, rec, connectionsIn{diag}.Connections)
}

func newOutageWatch(grace time.Duration, rec *pm.Reconciler, list func() ([]mptcpdiag.Connection, error)) *outageWatch {
	rec.KeepThroughOutage(func() (pm.ConnUse, error) {
		conns, err := list()
		return pm.ConnUseOf(conns), err
	})
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &outageWatch{list: list, grace: grace, timer: t}
}

func (o *outageWatch) stop() {
	if o != nil {
		o.timer.Stop()
	}
}

// passed notes what a pass left kept or in doubt, and looks at once if
// anything.
func (o *outageWatch) passed(res *pm.Result, now time.Time) {
	if o == nil {
		return
	}
	o.kept, o.inDoubt, o.plan = res.Kept, res.InDoubt, res.Plan
	switch {
	case len(o.kept) == 0 && len(o.inDoubt) == 0:
		o.back = time.Time{}
		o.timer.Stop()
		return
	case len(o.plan.Endpoints) == 0:
		o.back = time.Time{}
	case o.back.IsZero():
		o.back = now
	}
	o.timer.Reset(0)
}

// due fires when the kept endpoints should be looked at; never when off.
func (o *outageWatch) due() <-chan time.Time {
	if o == nil {
		return nil
	}
	return o.timer.C
}

// check says what to do now (pm.NextOutageStep); when that is nothing
// it looks again later.
func (o *outageWatch) check(now time.Time) pm.OutageStep {
	conns, err := o.list()
	if err != nil {
		// Blind, keeping could leave them for good.
		return pm.OutageStep{ReleaseKept: true, Resignal: true, Why: "the connections cannot be listed: " + err.Error()}
	}
	var back time.Duration
	if !o.back.IsZero() {
		back = now.Sub(o.back)
	}
	if step := pm.NextOutageStep(o.kept, o.inDoubt, o.plan, conns, back, o.grace); step.ReleaseKept || step.Resignal {
		return step
	}
	if o.back.IsZero() {
		o.timer.Reset(outageIdleRecheck)
	} else {
		o.timer.Reset(outageRecheck)
	}
	return pm.OutageStep{}
}
