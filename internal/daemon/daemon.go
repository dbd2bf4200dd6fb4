package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/mptcpd-go/mptcpd/internal/control"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/neigh"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Run is the daemon: it checks the system, then keeps the kernel's
// endpoint table equal to what the policy wants for the current links,
// addresses and routes until ctx ends. SIGHUP reloads the configuration.
func Run(ctx context.Context, opts Options) error {
	stderr := opts.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	s, err := loadSettings(opts)
	if err != nil {
		return err
	}
	log, err := NewLogger(s.conf.Log, opts.Debug, stderr)
	if err != nil {
		return err
	}
	// Warnings and errors also go to status, from every goroutine.
	problems := &problemLog{}
	log = slog.New(newProblemHandler(log.Handler(), problems))
	for _, w := range s.warnings {
		log.Warn(w)
	}
	if err := checkNetAdmin("/proc/self/status"); err != nil {
		return err
	}
	if err := mptcp.CheckEnabled(nil); err != nil {
		return err
	}
	if err := checkPathManager(s.conf, log); err != nil {
		return err
	}
	if ownNS, err := os.Readlink("/proc/thread-self/ns/net"); err == nil {
		if w := networkManagerWarning(networkManagers("/proc", ownNS)); w != "" {
			log.Warn(w)
		}
	}

	// Before the state file: a second daemon in the namespace stops here.
	ctl, err := startControl(s, opts.Version, problems, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := ctl.close(); err != nil {
			log.Error("control socket", "err", err)
		}
	}()

	client, err := mptcp.Dial(nil)
	if err != nil {
		return err
	}
	defer client.Close()
	// The monitor (and the health sampler) outlive ctx until the loop has
	// returned: a stop signal must not look like a dead monitor to a loop
	// that is mid-pass.
	monCtx, stopMon := context.WithCancel(context.Background())
	defer stopMon()
	e := &engine{
		log:    log,
		state:  netmon.NewState(),
		notify: func(state string) { _, _ = sddaemon.SdNotify(false, state) },
		ctl:    ctl,
	}
	started := []any{"version", opts.Version, "config", s.conf.Source, "policy", s.policy.Source, "socket", ctl.srv.Path()}
	// One sock_diag client for the loop's own listings: the outage
	// watch's and the stranded sweep's. Path health samples on its own
	// goroutine, with its own.
	diag, err := dialDiag(log)
	if err != nil {
		return err
	}
	if diag != nil {
		defer diag.Close()
		e.stranded = newStrandedSweep(diag.ConnectionsIn, diag.Destroy, log)
		defer e.stranded.stop()
	}
	if s.conf.InKernelPM() {
		store, err := openStore(s.conf.StateDir, log)
		if err != nil {
			return err
		}
		defer store.Close()
		e.kernel, e.store = &kernelView{Kernel: client}, store
		e.rec = pm.NewReconciler(e.kernel, store, log)
		started = append(started, "state", store.Path())
		e.outage = startOutageWatch(s.conf.OutageHold, e.rec, diag)
		defer e.outage.stop()
	} else {
		if e.user, err = startUserspace(client, s.conf, s.policy, opts.EventBuffer, ctl, log); err != nil {
			return err
		}
		defer func() {
			if err := e.user.stop(); err != nil {
				log.Error("userspace path manager", "err", err)
			}
		}()
		started = append(started, "plugin", s.conf.PathManager)
	}
	if e.health, err = startHealth(monCtx, s.conf.PathHealth, log); err != nil {
		return err
	}
	forgetter, err := neigh.New(0)
	if err != nil {
		return err
	}
	defer forgetter.Close()
	e.forgetNeighbours = forgetter.ForgetUnresolved
	e.routes, err = newRouter(log)
	if err != nil {
		return err
	}
	defer e.routes.Close()

	mon, err := netmon.Start(monCtx, netmon.Config{Logger: log, ReceiveBufferSize: opts.ReceiveBuffer})
	if err != nil {
		return err
	}
	defer mon.Close()

	if addr := s.conf.MetricsListen; addr != "" {
		if e.metrics, err = startMetrics(addr, opts.Version, ctl, s.conf.InKernelPM(), log); err != nil {
			return err
		}
		defer func() {
			if err := e.metrics.close(); err != nil {
				log.Error("metrics endpoint", "err", err)
			}
		}()
		started = append(started, "metrics", e.metrics.addr.String())
	}

	e.use(s)
	log.Info("mptcpd started", started...)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = e.loop(ctx, mon.Events(), hup, func() (*settings, error) { return loadSettings(opts) })
	if s := e.settings; err == nil && s.conf.RemoveOnExit && e.rec != nil {
		e.removeOwn()
	}
	e.notify("STOPPING=1")
	log.Info("mptcpd stopped", "err", err)
	return err
}

// engine is the daemon's state between events: what the network looks
// like, what was last reconciled, and when to look again.
type engine struct {
	log      *slog.Logger
	rec      *pm.Reconciler // the in-kernel mode; nil in the userspace one
	kernel   *kernelView    // what rec saw of the kernel; nil without a control plane
	store    *pm.Store      // rec's ownership record; nil without a control plane
	user     *userspaceMode // the userspace mode; nil in the in-kernel one
	ctl      *controlPlane  // the control socket; nil in tests that need none
	metrics  *metrics       // the Prometheus endpoint's; nil without metrics-listen
	health   *healthWatch   // path health; nil when off
	outage   *outageWatch   // the in-kernel mode's endpoints kept through an outage; nil when off
	stranded *strandedSweep // aborts subflows stranded on dead paths; nil when the kernel cannot
	// forgetNeighbours deletes a link's unresolved neighbour entries
	// (nl/neigh); nil in tests that need none.
	forgetNeighbours func(index int) (int, error)
	counters         control.Counters
	routes           router
	state            *netmon.State
	notify           func(string)
	settings         *settings
	classify         pm.Classifier

	last              pm.Network
	reconciled, ready bool
	force             bool // reconcile even if the network looks unchanged
	routed            []pm.SourceRoute
	retry             time.Duration    // current retry backoff; 0 when the last pass was clean
	leftOut           string           // the over-limit decisions last logged
	status            string           // the STATUS= last sent to systemd
	lastPlan          pm.Plan          // the last pass's, for status
	kept, inDoubt     []mptcp.Endpoint // the last pass's Result.Kept and InDoubt, for status
	adminLimits       []string         // the last pass's Result.AdminLimits
	passed            time.Time        // when the last pass ended
}

// Retry backoff after a pass with failures: soon, then less often, never
// slower than the periodic resync.
const (
	firstRetry = 20 * time.Millisecond
	maxRetry   = 5 * time.Second
	// drainMax bounds how many queued events one pass absorbs, so a storm
	// still reconciles every few thousand changes.
	drainMax = 4096
)

// use switches to new settings.
func (e *engine) use(s *settings) {
	e.settings = s
	e.classify = pm.SysfsClassifier("/sys/class/net", s.policy)
	e.force = true
	e.publish(e.lastPlan)
}

// publish shows the control socket's clients the engine as it is now,
// with plan the last pass's.
func (e *engine) publish(plan pm.Plan) {
	if e.ctl == nil {
		return
	}
	sn := &snapshot{at: e.passed, settings: e.settings, user: e.user, network: e.last, plan: plan, counters: e.counters, admin: e.adminLimits,
		health: e.health.verdicts()}
	if e.kernel != nil {
		sn.kernel, sn.limits = e.kernel.snapshot()
		sn.owned = e.store.Endpoints()
		sn.kept, sn.inDoubt = e.kept, e.inDoubt
	}
	e.lastPlan = plan
	e.ctl.publish(sn)
}

// loop handles events until ctx ends. A burst is absorbed whole (the
// queued events are drained without waiting) before one reconcile, so a
// lone change reaches the kernel at once and a storm costs one pass per
// batch, with no timer in between.
func (e *engine) loop(ctx context.Context, events <-chan netmon.Event, hup <-chan os.Signal, reload func() (*settings, error)) error {
	resync := time.NewTicker(e.settings.conf.ResyncInterval)
	defer resync.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		// A reload asked for through the control socket is answered
		// after the pass that follows it, so that its client then sees
		// the new configuration at work.
		var answer chan reloadOutcome
		var outcome reloadOutcome
		var arrived time.Time // when the loop took the first of a batch of events
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("network monitor stopped")
			}
			arrived = time.Now()
			e.apply(ev)
			e.drain(events)
		case <-resync.C:
			e.force = true
			e.counters.Resyncs++
			e.metrics.resync(resyncPeriodic)
		case <-retry.C:
			e.force = true
			e.counters.Retries++
		case <-hup:
			_ = e.reload(reload, resync)
		case answer = <-e.ctl.reloadRequests():
			outcome.err = e.reload(reload, resync)
			s := e.settings
			outcome.reloaded = control.Reloaded{Config: s.conf.Source, Policy: s.policy.Source}
		case err := <-e.user.ended():
			return fmt.Errorf("userspace path manager: %w", err)
		case hs := <-e.health.sampled():
			changed := e.health.observe(hs)
			if len(changed) == 0 {
				continue
			}
			e.publish(e.lastPlan)
			e.ctl.healthEvents(changed)
			e.metrics.healthChanged(changed)
		case now := <-e.outage.due():
			step := e.outage.check(now)
			if !step.ReleaseKept && !step.Resignal {
				continue
			}
			e.rec.Outage(step)
			e.force = true
		case <-e.stranded.due():
			e.stranded.followUp()
			continue
		case <-e.user.statusTick():
			if e.ready {
				e.readyWith(e.user.status())
			}
			continue
		}
		ran := e.pass()
		if ran {
			e.metrics.passEnded(arrived)
		}
		if answer != nil {
			answer <- outcome
		}
		if !ran {
			continue
		}
		if e.retry > 0 {
			retry.Reset(e.retry)
		}
	}
}

// apply feeds one monitor event into the state.
func (e *engine) apply(ev netmon.Event) {
	if r, ok := ev.(netmon.ResyncNeeded); ok {
		e.log.Warn("network events were lost, re-reading everything", "reason", r.Reason)
		e.force = true
		e.counters.Resyncs++
		e.metrics.resync(resyncNetworkEventsLost)
	}
	e.ctl.networkEvent(ev, e.state)
	e.state.Apply(ev)
}

func (e *engine) drain(events <-chan netmon.Event) {
	for range drainMax {
		select {
		case ev, ok := <-events:
			if !ok {
				return
			}
			e.apply(ev)
		default:
			return
		}
	}
}

// reload reads the configuration again; a bad one is logged and
// returned, and the running one stays.
func (e *engine) reload(load func() (*settings, error), resync *time.Ticker) error {
	e.notify("RELOADING=1")
	defer e.notify("READY=1")
	e.counters.Reloads++
	s, err := load()
	if err != nil {
		e.log.Error("reload failed, keeping the running configuration", "err", err)
		e.publish(e.lastPlan)
		e.ctl.reloadEvent(err)
		return err
	}
	for _, w := range s.warnings {
		e.log.Warn(w)
	}
	if s.conf.Log != e.settings.conf.Log {
		e.log.Warn("log destination changes take effect at restart", "log", s.conf.Log)
	}
	if s.conf.StateDir != e.settings.conf.StateDir {
		e.log.Warn("state-dir changes take effect at restart", "state_dir", s.conf.StateDir)
	}
	if s.conf.PathManager != e.settings.conf.PathManager {
		// The other mode (or plugin) needs other sockets and state.
		e.log.Warn("path-manager changes take effect at restart", "path_manager", s.conf.PathManager)
		s.conf.PathManager = e.settings.conf.PathManager
	}
	if s.conf.PathHealth != e.settings.conf.PathHealth {
		e.log.Warn("path-health changes take effect at restart", "path_health", s.conf.PathHealth)
		s.conf.PathHealth = e.settings.conf.PathHealth
	}
	if s.conf.OutageHold != e.settings.conf.OutageHold {
		e.log.Warn("outage-hold changes take effect at restart", "outage_hold", s.conf.OutageHold)
		s.conf.OutageHold = e.settings.conf.OutageHold
	}
	if s.conf.MetricsListen != e.settings.conf.MetricsListen {
		e.log.Warn("metrics-listen changes take effect at restart", "metrics_listen", s.conf.MetricsListen)
		s.conf.MetricsListen = e.settings.conf.MetricsListen
	}
	resync.Reset(s.conf.ResyncInterval)
	e.use(s)
	e.log.Info("configuration reloaded", "config", s.conf.Source, "policy", s.policy.Source)
	e.ctl.reloadEvent(nil)
	return nil
}

// pass reconciles when the state is complete and something may differ.
// It reports whether it ran.
func (e *engine) pass() bool {
	if !e.state.Synced() {
		return false
	}
	n := e.health.apply(pm.NetworkFrom(e.state, e.classify), e.settings.policy)
	if !e.force && e.reconciled && n.Equal(e.last) {
		return false
	}
	forced := e.force
	e.force = false
	e.counters.Passes++
	lost := e.reconciled && pm.LostPaths(e.last, n)
	if e.reconciled {
		e.forgetUnresolved(pm.Regained(e.last, n), n)
	}
	if e.user != nil {
		e.health.settle(n, e.settings.policy)
		e.passUserspace(n, forced)
		e.stranded.passed(n, lost)
		return true
	}
	start := time.Now()
	// A pass for a network event trusts the table the last clean pass
	// left; forced passes (start, resync, retry, reload) read it again.
	reconcile := e.rec.ReconcileCached
	if forced {
		reconcile = e.rec.Reconcile
	}
	res, err := reconcile(n, e.settings.policy)
	took := time.Since(start)
	e.health.settle(n, e.settings.policy)
	e.stranded.passed(n, lost || len(res.Deleted) > 0)
	e.metrics.reconciled(&res, err)
	e.last, e.reconciled = n, true
	clean := err == nil && len(res.Failed) == 0 && !res.Retry
	if err != nil {
		e.log.Error("reconcile failed", "err", err)
	}
	e.report(res, took)
	e.ctl.resultEvents(&res, n)
	if forced || !reflect.DeepEqual(res.Plan.SourceRoutes, e.routed) {
		if err := e.routes.Apply(res.Plan.SourceRoutes); err != nil {
			e.log.Error("source routing", "err", err)
			clean = false
		} else {
			e.routed = res.Plan.SourceRoutes
		}
	}
	if clean {
		e.retry = 0
	} else {
		e.retry = min(max(2*e.retry, firstRetry), maxRetry)
	}
	if err == nil {
		e.adminLimits, e.passed = res.AdminLimits, time.Now()
		e.kept, e.inDoubt = res.Kept, res.InDoubt
		e.outage.passed(&res, e.passed)
		e.publish(res.Plan)
		e.readyWith(fmt.Sprintf("STATUS=%d endpoints wanted, %d links", len(res.Plan.Endpoints), len(n.Links)))
	}
	return true
}

// forgetUnresolved clears the neighbour entries that failed to resolve
// while the links had no carrier, before the pass puts subflows on them
// (nl/neigh).
func (e *engine) forgetUnresolved(links []int, n pm.Network) {
	if e.forgetNeighbours == nil {
		return
	}
	for _, index := range links {
		l, _ := n.Link(index)
		k, err := e.forgetNeighbours(index)
		if err != nil {
			e.log.Warn("forgetting unresolved neighbours", "link", l.Name, "err", err)
		}
		if k > 0 {
			e.log.Debug("forgot neighbours unresolved while the link was unusable", "link", l.Name, "entries", k)
		}
	}
}

// passUserspace gives the plugin the network and installs the source
// routes the policy asks for, which subflows from other interfaces need
// just as much.
func (e *engine) passUserspace(n pm.Network, forced bool) {
	e.user.network(n, e.settings.policy)
	e.last, e.reconciled = n, true
	plan := pm.Desired(n, e.settings.policy, mptcp.MPTCP_PM_MAX_ADDR_ID)
	if forced || !reflect.DeepEqual(plan.SourceRoutes, e.routed) {
		if err := e.routes.Apply(plan.SourceRoutes); err != nil {
			e.log.Error("source routing", "err", err)
		} else {
			e.routed = plan.SourceRoutes
		}
	}
	e.passed = time.Now()
	e.publish(plan)
	e.readyWith(e.user.status())
}

// readyWith sends READY=1 after the first complete pass, and status when
// it changed: every pass would be a needless datagram to systemd.
func (e *engine) readyWith(status string) {
	if !e.ready {
		e.ready = true
		e.notify("READY=1")
	}
	if status != e.status {
		e.status = status
		e.notify(status)
	}
}

// report logs what the reconciler itself does not: endpoints left out for
// lack of room (once per change) and a debug summary. The reconciler
// logs each kernel write and failure.
func (e *engine) report(res pm.Result, took time.Duration) {
	var left []string
	for _, d := range res.Plan.Decisions {
		if d.Verdict == pm.VerdictOverLimit {
			left = append(left, d.String())
		}
	}
	// Said once per change of the set, not on every pass.
	if s := strings.Join(left, "; "); s != e.leftOut {
		e.leftOut = s
		for _, d := range left {
			e.log.Warn("endpoint left out: the kernel holds at most 8 per namespace", "decision", d)
		}
	}
	e.log.Debug("reconciled", "took", took, "wanted", len(res.Plan.Endpoints), "changed", res.Changed, "held", len(res.Held))
}

// removeOwn deletes the endpoints and source routes this daemon made
// (--remove-on-exit).
func (e *engine) removeOwn() {
	e.rec.KeepThroughOutage(nil)
	res, err := e.rec.Reconcile(pm.Network{}, e.settings.policy)
	if err != nil {
		e.log.Error("removing own endpoints", "err", err)
	}
	e.report(res, 0)
	if err := e.routes.Apply(nil); err != nil {
		e.log.Error("removing source routes", "err", err)
	}
}

// checkPathManager makes sure net.mptcp.path_manager fits the mode: set
// it when the configuration says so, else warn when it differs.
func checkPathManager(conf *policy.Config, log *slog.Logger) error {
	want := "kernel"
	if !conf.InKernelPM() {
		want = "userspace"
	}
	if conf.SetPathManager {
		if err := mptcp.SetPathManager(nil, want); err != nil {
			return err
		}
		log.Info("set the namespace's path manager", "path_manager", want)
		return nil
	}
	name, err := mptcp.PathManager(nil)
	switch {
	case err != nil:
		return err
	case name != want && want == "kernel":
		log.Warn("the namespace's path manager is not the in-kernel one: the endpoints mptcpd programs apply to connections only with net.mptcp.path_manager=kernel (or set-path-manager=yes)", "path_manager", name)
	case name != want:
		log.Warn("the namespace's path manager is not the userspace one: the plugin sees only connections made with net.mptcp.path_manager=userspace (or set-path-manager=yes)", "path_manager", name, "plugin", conf.PathManager)
	}
	return nil
}

// openStore opens the ownership record of the in-kernel mode in dir.
func openStore(dir string, log *slog.Logger) (*pm.Store, error) {
	path, err := pm.StatePath(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	store, err := pm.OpenStore(path)
	if errors.Is(err, pm.ErrCorruptStore) {
		// A damaged record is reported and replaced; the endpoints it
		// named become foreign until a rule adopts them.
		log.Error("ownership record unreadable, starting with an empty one", "err", err)
		err = nil
	}
	return store, err
}
