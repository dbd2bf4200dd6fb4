package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/health"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
)

// The Prometheus endpoint (metrics-listen). The engine loop only adds to
// atomic counters and a histogram; everything else is read at scrape
// time from the snapshot the loop publishes for the control socket and,
// for the in-kernel mode's connections, from sock_diag. So a scrape never
// makes the loop wait.

const (
	metricsPath = "/metrics"
	// connsEvery bounds how often scrapes list the connections; those in
	// between reuse the last counts, so that no scraper can make the
	// daemon dump a large table over and over.
	connsEvery = 2 * time.Second
)

// The label values of the counters, in the order they are shown.
var (
	opKinds  = []string{"add", "delete", "set_flags", "limits"}
	errKinds = []string{"add", "delete", "set_flags", "limits", "save_state", "dump", "other"}
	// resyncReasons are the engine loop's; the userspace engine's own
	// (resyncMPTCPEventsLost) is read from its Stats.
	resyncReasons = []string{resyncPeriodic, resyncNetworkEventsLost}
)

const (
	resyncPeriodic          = "periodic"
	resyncNetworkEventsLost = "network_events_lost"
	resyncMPTCPEventsLost   = "mptcp_events_lost"
)

var (
	descBuildInfo = prometheus.NewDesc("mptcpd_build_info",
		"The daemon's version and the Go version that built it; always 1.",
		[]string{"version", "goversion"}, nil)
	descEndpoints = prometheus.NewDesc("mptcpd_endpoints",
		"MPTCP endpoints by interface and flags: in the in-kernel mode the kernel's table (the daemon's endpoints and others') "+
			"as of the last pass, in the userspace mode the local addresses the plugin may use.",
		[]string{"interface", "flags"}, nil)
	descOps = prometheus.NewDesc("mptcpd_reconcile_operations_total",
		"Kernel writes of the in-kernel mode's reconciler that succeeded, by kind: add, delete, set_flags (endpoints) and limits.",
		[]string{"kind"}, nil)
	descErrors = prometheus.NewDesc("mptcpd_reconcile_errors_total",
		"Failed steps of the in-kernel mode's reconcile passes, by kind: add, delete, set_flags, limits (read or write), "+
			"save_state (the ownership record), dump (the endpoint table could not be read: the pass did nothing).",
		[]string{"kind"}, nil)
	descResyncs = prometheus.NewDesc("mptcpd_resyncs_total",
		"Full re-reads, by reason: periodic (resync-interval), network_events_lost (rtnetlink notifications were lost), "+
			"mptcp_events_lost (userspace mode: mptcp_pm events were lost and the connection table is rebuilt).",
		[]string{"reason"}, nil)
	descConnections = prometheus.NewDesc("mptcpd_connections",
		"MPTCP connections (listeners excluded) by the interface of their local address, \"\" when unknown: "+
			"the userspace engine's table, or in the in-kernel mode the kernel's sockets. Counted at most every 2s.",
		[]string{"interface"}, nil)
	descHealth = prometheus.NewDesc("mptcpd_path_health",
		"Path health of each interface with endpoints (in-kernel mode, path-health on): 1 for its current state "+
			"(healthy, failed: endpoints withdrawn, probation: endpoints back awaiting proof).",
		[]string{"interface", "state"}, nil)
	descHealthChanges = prometheus.NewDesc("mptcpd_path_health_changes_total",
		"Path health verdicts reached, by the state entered.",
		[]string{"state"}, nil)
	descSubflows = prometheus.NewDesc("mptcpd_subflows",
		"TCP subflows of MPTCP connections by the interface of their local address, \"\" when unknown: "+
			"the userspace engine's table (subflows asked for and not yet established left out), or in the in-kernel mode "+
			"the kernel's sockets. Counted at most every 2s.",
		[]string{"interface"}, nil)
)

// metrics are the daemon's Prometheus metrics, in a registry of their
// own. The engine loop calls the nil-safe hooks (reconciled, resync,
// passEnded); scrapes read ctl's snapshot.
type metrics struct {
	version string
	ctl     *controlPlane
	lister  userspace.Lister // the in-kernel mode's connections; nil in the userspace one
	log     *slog.Logger
	reg     *prometheus.Registry

	ops, errs, resyncs counterSet
	healthChanges      counterSet
	lag                prometheus.Histogram

	connMu          sync.Mutex // held by the scrape that lists
	connEvery       time.Duration
	connAt          time.Time
	conns, subflows map[string]int // as of connAt; never changed once made
	connErr         string         // the listing error last logged

	srv    *http.Server
	addr   net.Addr
	served chan struct{} // closed when srv stops serving
	diag   *mptcpdiag.Client
}

func newMetrics(version string, ctl *controlPlane, lister userspace.Lister, log *slog.Logger) *metrics {
	m := &metrics{
		version: version, ctl: ctl, lister: lister, log: log, reg: prometheus.NewRegistry(),
		ops: newCounterSet(opKinds), errs: newCounterSet(errKinds), resyncs: newCounterSet(resyncReasons),
		healthChanges: newCounterSet(healthStates),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "mptcpd_event_lag_seconds",
			Help: "Seconds from the engine loop taking a network event off the monitor's queue to the end of the pass that handled it, " +
				"for the first event of each batch; time spent waiting in the socket or the queue while the loop was busy is not included.",
			// 100µs to 1.6s: a pass takes well under a millisecond.
			Buckets: prometheus.ExponentialBuckets(100e-6, 2, 15),
		}),
		connEvery: connsEvery,
	}
	m.reg.MustRegister(m, m.lag, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// startMetrics serves the metrics over HTTP at addr. In the in-kernel
// mode connections are listed with a sock_diag client of its own.
func startMetrics(addr, version string, ctl *controlPlane, inKernel bool, log *slog.Logger) (*metrics, error) {
	var diag *mptcpdiag.Client
	var lister userspace.Lister
	if inKernel {
		var err error
		if diag, err = mptcpdiag.Dial(nil); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		lister = connectionsIn{diag}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if diag != nil {
			diag.Close()
		}
		return nil, fmt.Errorf("metrics-listen=%s: %w", addr, err)
	}
	m := newMetrics(version, ctl, lister, log)
	m.diag, m.addr, m.served = diag, ln.Addr(), make(chan struct{})
	mux := http.NewServeMux()
	mux.Handle(metricsPath, m.handler())
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: 30 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	go func() {
		defer close(m.served)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics endpoint stopped", "err", err)
		}
	}()
	return m, nil
}

// handler answers scrapes; past a few at once, it refuses more.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(m.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
	})
}

// close stops serving, after the scrapes in progress (a second at most).
func (m *metrics) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := m.srv.Shutdown(ctx)
	if err != nil {
		err = m.srv.Close()
	}
	<-m.served
	if m.diag != nil {
		err = errors.Join(err, m.diag.Close())
	}
	return err
}

// reconciled counts the writes and failures of an in-kernel pass; err is
// Reconcile's, which only a failed dump of the endpoint table returns.
func (m *metrics) reconciled(res *pm.Result, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.errs.add("dump", 1)
		return
	}
	m.ops.add("add", len(res.Added))
	m.ops.add("delete", len(res.Deleted))
	m.ops.add("set_flags", len(res.FlagsChanged))
	if l := res.LimitsSet; l.Subflows != nil || l.AddAddrAccepted != nil {
		m.ops.add("limits", 1)
	}
	for _, f := range res.Failed {
		m.errs.add(errKind(f.Op), 1)
	}
}

// errKind names a pm.OpError's step as the error counter does.
func errKind(op string) string {
	switch op {
	case "set flags":
		return "set_flags"
	case "read limits", "set limits":
		return "limits"
	}
	if k := strings.ReplaceAll(op, " ", "_"); slices.Contains(errKinds, k) {
		return k
	}
	return "other"
}

// resync counts a full re-read for reason, one of resyncReasons.
// healthStates are the label values of the path health metrics.
var healthStates = []string{health.Healthy.String(), health.Failed.String(), health.Probation.String()}

// healthChanged counts verdicts reached.
func (m *metrics) healthChanged(vs []health.Verdict) {
	if m != nil {
		for _, v := range vs {
			m.healthChanges.add(v.State.String(), 1)
		}
	}
}

func (m *metrics) resync(reason string) {
	if m != nil {
		m.resyncs.add(reason, 1)
	}
}

// passEnded observes the event lag of a pass that just ended; arrived is
// when the loop took the first event of its batch, zero for a pass with
// another cause.
func (m *metrics) passEnded(arrived time.Time) {
	if m != nil && !arrived.IsZero() {
		m.lag.Observe(time.Since(arrived).Seconds())
	}
}

// Describe is prometheus.Collector's.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descBuildInfo, descEndpoints, descOps, descErrors, descResyncs, descConnections, descSubflows, descHealth, descHealthChanges} {
		ch <- d
	}
}

// Collect is prometheus.Collector's.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	sn := m.ctl.snap.Load()
	inKernel := sn.settings.conf.InKernelPM()
	ch <- prometheus.MustNewConstMetric(descBuildInfo, prometheus.GaugeValue, 1, m.version, runtime.Version())
	if inKernel {
		m.ops.collect(ch, descOps)
		m.errs.collect(ch, descErrors)
		if sn.health != nil { // path health is on
			m.healthChanges.collect(ch, descHealthChanges)
		}
	}
	for _, v := range sn.health {
		for _, st := range healthStates {
			val := 0.0
			if st == v.State.String() {
				val = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealth, prometheus.GaugeValue, val, v.Name, st)
		}
	}
	m.resyncs.collect(ch, descResyncs)
	if sn.user != nil {
		ch <- prometheus.MustNewConstMetric(descResyncs, prometheus.CounterValue, float64(sn.user.eng.Stats().EventsLost), resyncMPTCPEventsLost)
	}

	names := newLinkNames(sn)
	type epKey struct{ link, flags string }
	eps := make(map[epKey]int)
	if inKernel {
		for _, e := range sn.kernel {
			eps[epKey{names.of(e.Addr, e.IfIndex), flagsLabel(e.Flags)}]++
		}
	} else {
		for _, w := range sn.plan.Endpoints {
			eps[epKey{w.Link, flagsLabel(w.Endpoint.Flags)}]++
		}
	}
	for k, n := range eps {
		ch <- prometheus.MustNewConstMetric(descEndpoints, prometheus.GaugeValue, float64(n), k.link, k.flags)
	}

	if conns, subflows, ok := m.connections(sn, names); ok {
		for link, n := range conns {
			ch <- prometheus.MustNewConstMetric(descConnections, prometheus.GaugeValue, float64(n), link)
		}
		for link, n := range subflows {
			ch <- prometheus.MustNewConstMetric(descSubflows, prometheus.GaugeValue, float64(n), link)
		}
	}
}

// flagsLabel is the flags as addr-flags writes them: "subflow,backup".
func flagsLabel(f mptcp.Flags) string { return strings.Join(f.Names(), ",") }

// connections counts the connections and their subflows by interface,
// listing them at most every connEvery; ok is false when they cannot be
// listed.
func (m *metrics) connections(sn *snapshot, names linkNames) (conns, subflows map[string]int, ok bool) {
	m.connMu.Lock()
	defer m.connMu.Unlock()
	if m.conns != nil && time.Since(m.connAt) < m.connEvery {
		return m.conns, m.subflows, true
	}
	conns, subflows = make(map[string]int), make(map[string]int)
	switch {
	case sn.user != nil:
		for _, c := range sn.user.eng.Connections() {
			conns[names.of(c.Local.Addr(), 0)]++
			for _, s := range c.Subflows {
				if !s.Pending {
					subflows[names.of(s.Local.Addr(), s.IfIndex)]++
				}
			}
		}
	case m.lister != nil:
		list, err := m.lister.Connections()
		if err != nil {
			// Said once, not at every scrape.
			if msg := err.Error(); msg != m.connErr {
				m.connErr = msg
				m.log.Warn("metrics: cannot list the connections", "err", err)
			}
			return nil, nil, false
		}
		for i := range list {
			c := &list[i]
			if c.Listening() {
				continue
			}
			conns[names.of(c.Local.Addr(), c.IfIndex)]++
			for _, s := range c.Subflows {
				subflows[names.of(s.Local.Addr(), s.IfIndex)]++
			}
		}
	default:
		return nil, nil, false // the userspace mode before its first pass
	}
	m.conns, m.subflows, m.connAt, m.connErr = conns, subflows, time.Now(), ""
	return conns, subflows, true
}

// linkNames names the links of local addresses in a snapshot.
type linkNames struct {
	sn     *snapshot
	byAddr map[netip.Addr]string
}

func newLinkNames(sn *snapshot) linkNames {
	byAddr := make(map[netip.Addr]string, len(sn.network.Addrs))
	for _, a := range sn.network.Addrs {
		byAddr[a.Addr()] = sn.linkName(a.LinkIndex)
	}
	return linkNames{sn: sn, byAddr: byAddr}
}

// of names the link of local address a: the device a socket or endpoint
// is bound to (ifindex), else the link that holds a in the last pass's
// network; "" when neither is known.
func (l linkNames) of(a netip.Addr, ifindex int) string {
	if name := l.sn.linkName(ifindex); ifindex != 0 && name != "" {
		return name
	}
	return l.byAddr[a.Unmap()]
}

// counterSet is a counter per label value, added to without locks.
type counterSet struct {
	names []string
	n     []atomic.Uint64
}

func newCounterSet(names []string) counterSet {
	return counterSet{names: names, n: make([]atomic.Uint64, len(names))}
}

// add adds delta to name's counter; name must be one of the set's.
func (c *counterSet) add(name string, delta int) {
	if delta > 0 {
		c.n[slices.Index(c.names, name)].Add(uint64(delta))
	}
}

func (c *counterSet) collect(ch chan<- prometheus.Metric, d *prometheus.Desc) {
	for i, name := range c.names {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(c.n[i].Load()), name)
	}
}
