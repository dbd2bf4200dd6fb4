package daemon

import (
	"errors"
	"log/slog"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
)

// strandedSweep aborts the subflows stranded on a dead path
// (pm/stranded.go). It looks at each of strandedAt after a pass that lost
// a path or deleted endpoints: the later looks are for the subflows
// closed after the pass (a userspace plugin's destroys, the kernel's own
// closes on RM_ADDR).
type strandedSweep struct {
	list    func(mptcpdiag.States) ([]mptcpdiag.Connection, error)
	destroy func(mptcpdiag.Subflow) error
	log     *slog.Logger
	timer   *time.Timer
	n       pm.Network // the last pass's
	next    int        // the next of strandedAt
	armed   bool       // timer is set for strandedAt[next]
	aborted uint64     // subflows aborted so far
}

// strandedAt are the sweeps' times after the pass. The first is not
// made inline: the pass is often one of a burst (the address, then its
// routes; a delete, then the add of its successor), and those events go
// first. An orphan resends on RTO (200 ms or more), so 10 ms costs
// nothing.
var strandedAt = []time.Duration{10 * time.Millisecond, 250 * time.Millisecond, 2 * time.Second}

// dialDiag opens the sock_diag client the loop lists connections with;
// nil, with a warning, where the system has none: endpoints are then not
// kept through outages, and stranded subflows are left to time out.
func dialDiag(log *slog.Logger) (*mptcpdiag.Client, error) {
	diag, err := mptcpdiag.Dial(nil)
	if errors.Is(err, mptcp.ErrNotSupported) {
		log.Warn("MPTCP connections cannot be listed: no outage keeping, no stranded subflow sweep", "err", err)
		return nil, nil
	}
	return diag, err
}

// connectionsIn is a Lister of the connections without the listeners,
// which none of the daemon's periodic users needs and which cost a walk
// of the kernel's listening hash (mptcpdiag.ConnectionsIn).
type connectionsIn struct{ *mptcpdiag.Client }

func (c connectionsIn) Connections() ([]mptcpdiag.Connection, error) {
	return c.ConnectionsIn(mptcpdiag.AllStates)
}

func newStrandedSweep(list func(mptcpdiag.States) ([]mptcpdiag.Connection, error), destroy func(mptcpdiag.Subflow) error, log *slog.Logger) *strandedSweep {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &strandedSweep{list: list, destroy: destroy, log: log, timer: t}
}

func (s *strandedSweep) stop() {
	if s != nil {
		s.timer.Stop()
	}
}

// passed notes the network a pass left; lost says the pass lost a path
// or deleted endpoints, which (re)starts the sweeps. A first sweep
// already due stays as it is, so a storm of passes cannot put it off.
func (s *strandedSweep) passed(n pm.Network, lost bool) {
	if s == nil {
		return
	}
	s.n = n
	if !lost || s.armed && s.next == 0 {
		return
	}
	s.next, s.armed = 0, true
	s.timer.Reset(strandedAt[0])
}

// due fires when a sweep is due; never when off.
func (s *strandedSweep) due() <-chan time.Time {
	if s == nil {
		return nil
	}
	return s.timer.C
}

// followUp runs a due sweep and schedules the next.
func (s *strandedSweep) followUp() {
	s.sweep()
	s.armed = false
	if s.next++; s.next < len(strandedAt) {
		s.armed = true
		s.timer.Reset(strandedAt[s.next] - strandedAt[s.next-1])
	}
}

// off turns the sweep off for good, on a kernel that cannot do it.
func (s *strandedSweep) off() {
	s.list = func(mptcpdiag.States) ([]mptcpdiag.Connection, error) { return nil, nil }
}

// sweep aborts what is stranded now. A kernel that cannot abort sockets
// turns the sweep off.
func (s *strandedSweep) sweep() {
	conns, err := s.list(pm.ClosingStates())
	if err != nil {
		s.log.Warn("listing connections for stranded subflows", "err", err)
		if errors.Is(err, mptcp.ErrNotSupported) {
			s.off()
		}
		return
	}
	n := 0
	for _, sf := range pm.Stranded(conns, s.n) {
		err := s.destroy(sf)
		if errors.Is(err, mptcp.ErrNotSupported) {
			s.log.Warn("subflows stranded on dead paths are left to time out", "err", err)
			s.off()
			return
		}
		if err != nil {
			s.log.Warn("aborting a stranded subflow", "local", sf.Local, "remote", sf.Remote, "err", err)
			continue
		}
		n++
		s.log.Debug("aborted a stranded subflow", "local", sf.Local, "remote", sf.Remote, "state", sf.State)
	}
	if n > 0 {
		s.aborted += uint64(n)
		s.log.Info("aborted subflows stranded on a dead path: their data was sent again on others", "subflows", n)
	}
}
