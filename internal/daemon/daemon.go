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

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
	"github.com/mptcpd-go/mptcpd/pm"
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
	for _, w := range s.warnings {
		log.Warn(w)
	}
	if err := checkNetAdmin("/proc/self/status"); err != nil {
		return err
	}
	if err := mptcp.CheckEnabled(nil); err != nil {
		return err
	}
	if name, err := mptcp.PathManager(nil); err == nil && name != "kernel" {
		log.Warn("the namespace's path manager is not the in-kernel one: the endpoints mptcpd programs apply to connections only with net.mptcp.path_manager=kernel", "path_manager", name)
	}
	if ownNS, err := os.Readlink("/proc/thread-self/ns/net"); err == nil {
		if w := networkManagerWarning(networkManagers("/proc", ownNS)); w != "" {
			log.Warn(w)
		}
	}

	client, err := mptcp.Dial(nil)
	if err != nil {
		return err
	}
	defer client.Close()
	statePath, err := pm.StatePath(s.conf.StateDir)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.conf.StateDir, 0o755); err != nil {
		return fmt.Errorf("state directory: %w", err)
	}
	store, err := pm.OpenStore(statePath)
	switch {
	case errors.Is(err, pm.ErrCorruptStore):
		// A damaged record is reported and replaced; the endpoints it
		// named become foreign until a rule adopts them.
		log.Error("ownership record unreadable, starting with an empty one", "err", err)
	case err != nil:
		return err
	}
	defer store.Close()
	routes, err := newRouter(log)
	if err != nil {
		return err
	}
	defer routes.Close()

	// The monitor outlives ctx until the loop has returned: a stop signal
	// must not look like a dead monitor to a loop that is mid-pass.
	monCtx, stopMon := context.WithCancel(context.Background())
	defer stopMon()
	mon, err := netmon.Start(monCtx, netmon.Config{Logger: log, ReceiveBufferSize: opts.ReceiveBuffer})
	if err != nil {
		return err
	}
	defer mon.Close()

	e := &engine{
		log:    log,
		rec:    pm.NewReconciler(client, store, log),
		routes: routes,
		state:  netmon.NewState(),
		notify: func(state string) { _, _ = sddaemon.SdNotify(false, state) },
	}
	e.use(s)
	log.Info("mptcpd started", "version", opts.Version, "config", s.conf.Source, "policy", s.policy.Source, "state", statePath)

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	err = e.loop(ctx, mon.Events(), hup, func() (*settings, error) { return loadSettings(opts) })
	if s := e.settings; err == nil && s.conf.RemoveOnExit {
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
	rec      *pm.Reconciler
	routes   router
	state    *netmon.State
	notify   func(string)
	settings *settings
	classify pm.Classifier

	last              pm.Network
	reconciled, ready bool
	force             bool // reconcile even if the network looks unchanged
	routed            []pm.SourceRoute
	retry             time.Duration // current retry backoff; 0 when the last pass was clean
	leftOut           string        // the over-limit decisions last logged
	status            string        // the STATUS= last sent to systemd
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
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("network monitor stopped")
			}
			e.apply(ev)
			e.drain(events)
		case <-resync.C:
			e.force = true
		case <-retry.C:
			e.force = true
		case <-hup:
			e.reload(reload, resync)
		}
		if !e.pass() {
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
	}
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

// reload reads the configuration again; a bad one is logged and the
// running one stays.
func (e *engine) reload(load func() (*settings, error), resync *time.Ticker) {
	e.notify("RELOADING=1")
	defer e.notify("READY=1")
	s, err := load()
	if err != nil {
		e.log.Error("reload failed, keeping the running configuration", "err", err)
		return
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
	resync.Reset(s.conf.ResyncInterval)
	e.use(s)
	e.log.Info("configuration reloaded", "config", s.conf.Source, "policy", s.policy.Source)
}

// pass reconciles when the state is complete and something may differ.
// It reports whether it ran.
func (e *engine) pass() bool {
	if !e.state.Synced() {
		return false
	}
	n := pm.NetworkFrom(e.state, e.classify)
	if !e.force && e.reconciled && n.Equal(e.last) {
		return false
	}
	forced := e.force
	e.force = false
	start := time.Now()
	// A pass for a network event trusts the table the last clean pass
	// left; forced passes (start, resync, retry, reload) read it again.
	reconcile := e.rec.ReconcileCached
	if forced {
		reconcile = e.rec.Reconcile
	}
	res, err := reconcile(n, e.settings.policy)
	took := time.Since(start)
	e.last, e.reconciled = n, true
	clean := err == nil && len(res.Failed) == 0 && !res.Retry
	if err != nil {
		e.log.Error("reconcile failed", "err", err)
	}
	e.report(res, took)
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
	if !e.ready && err == nil {
		e.ready = true
		e.notify("READY=1")
	}
	// Only a changed status is sent: every pass would be a needless
	// datagram to systemd.
	if status := fmt.Sprintf("STATUS=%d endpoints wanted, %d links", len(res.Plan.Endpoints), len(n.Links)); status != e.status {
		e.status = status
		e.notify(status)
	}
	return true
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
	res, err := e.rec.Reconcile(pm.Network{}, e.settings.policy)
	if err != nil {
		e.log.Error("removing own endpoints", "err", err)
	}
	e.report(res, 0)
	if err := e.routes.Apply(nil); err != nil {
		e.log.Error("removing source routes", "err", err)
	}
}
