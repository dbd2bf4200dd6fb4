// Package walk is the roaming demo (make demo): a laptop on the roaming
// testbed (internal/testbed) walks from a Wi-Fi access point to another
// on a new subnet, through a black zone on 4G alone, to a third AP, then
// spends the outage with no link at all and comes back, while a bulk
// upload and an ssh-like interactive stream run over MPTCP. Our mptcpd
// manages the laptop's endpoints with its built-in policy (or, as the
// baseline, the kernel holds a static endpoint per link). The walk
// prints what each step cost the two flows, which link carried the data,
// the endpoints the laptop had, whether the connections survived, and
// leaves a trace of the laptop's links with the steps marked, drawn by
// `mptcpctl plot`.
package walk

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/ctl"
	"github.com/mptcpd-go/mptcpd/internal/testbed"
	"github.com/mptcpd-go/mptcpd/internal/trace"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Config is a walk. The zero value of a field means its default.
type Config struct {
	// Mptcpd is the daemon's binary, run in the laptop's namespace with
	// the built-in policy; "" runs none: the kernel alone, with one
	// static endpoint per link (wwan0's a backup), the baseline.
	Mptcpd string
	// Dir receives the trace (walk.csv), its plot (walk.png, walk.svg),
	// and the daemon's configuration and log. It is created if missing.
	Dir string
	// Dwell is the stay at each access point (5 s); walking between two
	// takes half of it.
	Dwell time.Duration
	// BlackZone is the time on 4G alone with 4G forwarding nothing (3 s).
	BlackZone time.Duration
	// Outage is the time with no link at all (30 s).
	Outage time.Duration
	// Out hears of each step as it happens, then the summary; nil
	// discards.
	Out io.Writer
}

// Defaults of Config.
const (
	DefaultDwell     = 5 * time.Second
	DefaultBlackZone = 3 * time.Second
	DefaultOutage    = 30 * time.Second
)

const (
	wlanRate = 50e6 // bit/s, each hop of wlan0's paths
	wwanRate = 20e6 // and of wwan0's
	// warmUp lets the flows leave slow start (internal/testbed's doc)
	// before the first step is measured.
	warmUp = 2 * time.Second
	// setUpTimeout bounds the daemon's first endpoints and the flows'
	// second subflows: missing it is a broken set-up.
	setUpTimeout = 10 * time.Second
	stopGrace    = 5 * time.Second
	// sampleEvery is the trace's interval, the plot's resolution.
	sampleEvery = 100 * time.Millisecond
)

// Report is what a walk measured.
type Report struct {
	Baseline bool // the kernel alone: no daemon
	Steps    []StepReport
	Bulk     testbed.Result // the upload
	Echo     testbed.Result // the interactive stream
	// Files are what the walk left in Config.Dir.
	Files []string
}

// StepReport is one step of the walk.
type StepReport struct {
	Name, Expect string
	At, End      time.Time // its event, and the next step's
	// BulkStall and EchoStall are the flows' longest time without data
	// within [At, End]: a stall begun in an earlier step counts from At.
	BulkStall, EchoStall time.Duration
	// Tx is what the laptop sent per link over the step, in bit/s.
	Tx map[string]float64
	// Endpoints are the laptop's MPTCP endpoints at End, one
	// "ADDR DEV FLAGS" each.
	Endpoints []string
}

// Run walks; ctx ends it early (everything it made is removed then too).
func Run(ctx context.Context, cfg Config) (rep *Report, err error) {
	cfg.Dwell = cmp.Or(cfg.Dwell, DefaultDwell)
	cfg.BlackZone = cmp.Or(cfg.BlackZone, DefaultBlackZone)
	cfg.Outage = cmp.Or(cfg.Outage, DefaultOutage)
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Dir == "" {
		return nil, errors.New("walk: no output directory")
	}
	if cfg.Dir, err = filepath.Abs(cfg.Dir); err != nil {
		return nil, fmt.Errorf("walk: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("walk: %w", err)
	}
	w := &walker{cfg: cfg, out: cfg.Out, rep: &Report{Baseline: cfg.Mptcpd == ""}}
	defer func() { err = errors.Join(err, w.close()) }()
	if err := w.setUp(ctx); err != nil {
		return nil, err
	}
	if err := w.walk(ctx); err != nil {
		return nil, err
	}
	if err := w.finish(ctx); err != nil {
		return nil, err
	}
	return w.rep, nil
}

// walker is one walk under way.
type walker struct {
	cfg Config
	out io.Writer
	rep *Report

	bed       *testbed.Testbed
	daemon    *exec.Cmd
	daemonLog *os.File
	pm        *mptcp.Client // the laptop's path manager, to read endpoints
	sampler   *trace.Sampler
	traceFile *os.File
	stopTrace context.CancelFunc
	traceDone chan error
	bulk      *testbed.Flow
	echo      *testbed.Flow
}

func (w *walker) say(format string, args ...any) { fmt.Fprintf(w.out, format+"\n", args...) }

func (w *walker) file(name string) string {
	path := filepath.Join(w.cfg.Dir, name)
	w.rep.Files = append(w.rep.Files, path)
	return path
}

// setUp builds the testbed, starts the path manager, the trace and the
// flows, and waits until each flow has a subflow on each link.
func (w *walker) setUp(ctx context.Context) error {
	var err error
	w.bed, err = testbed.Start(testbed.Config{Links: []testbed.LinkConfig{
		{Name: "wlan0", Shape: testbed.Shape{Rate: wlanRate}},
		{Name: "wwan0", Shape: testbed.Shape{Rate: wwanRate}},
	}})
	if err != nil {
		return err
	}
	w.say("A laptop (namespace %s) with wlan0 at %g Mbit/s and wwan0 (4G) at %g Mbit/s, one router per link,",
		w.bed.Laptop, wlanRate/1e6, wwanRate/1e6)
	w.say("and a server (%s) at %s.", w.bed.Server, w.bed.ServerAddrs()[0])
	// The server takes joins: dead subflows of a lost link still count
	// against the kernel's default of 2.
	if err := w.bed.Server.SetLimits(8, 8); err != nil {
		return err
	}
	if w.pm, err = mptcp.Dial(&mptcp.Config{NetNS: w.bed.Laptop.FD()}); err != nil {
		return fmt.Errorf("walk: the laptop's path manager: %w", err)
	}
	if w.rep.Baseline {
		err = w.staticEndpoints()
	} else {
		err = w.startDaemon(ctx)
	}
	if err != nil {
		return err
	}
	if err := w.startTrace(ctx); err != nil {
		return err
	}
	if w.bulk, err = w.bed.Upload(testbed.FlowConfig{}); err != nil {
		return err
	}
	if w.echo, err = w.bed.Interactive(testbed.FlowConfig{}); err != nil {
		return err
	}
	w.say("Two MPTCP connections to the server: a bulk upload, and an interactive stream (64 bytes every 10 ms, echoed).")
	return w.waitSubflows(ctx)
}

// staticEndpoints is the baseline: what a hand-written configuration
// would give the kernel, nothing following the walk.
func (w *walker) staticEndpoints() error {
	if err := w.bed.StaticEndpoints(mptcp.FlagSubflow); err != nil {
		return err
	}
	eps, err := w.pm.Endpoints()
	if err != nil {
		return err
	}
	for _, e := range eps {
		if e.Addr.Unmap() == wwan(w.bed).Addr() {
			e.Flags |= mptcp.FlagBackup
			if err := w.pm.SetEndpointFlags(e); err != nil {
				return fmt.Errorf("walk: wwan0's endpoint: backup: %w", err)
			}
		}
	}
	w.say("Path manager: the kernel alone, a static endpoint per link (wwan0's a backup), no daemon.")
	return nil
}

// demoPolicy is the built-in policy with the testbed's veths classified
// as the links they stand for: on a real laptop sysfs tells wlan0 is
// Wi-Fi and wwan0 a modem, and a veth is "virtual".
func demoPolicy() *policy.Policy {
	p := policy.Default(policy.DefaultConfig().BaseSettings(), 0)
	p.Source = "built-in, with the walk's links classified"
	p.Classify = []policy.ClassifyRule{{Pattern: "wlan*", Kind: policy.KindWiFi}, {Pattern: "wwan*", Kind: policy.KindWWAN}}
	return p
}

// startDaemon runs mptcpd in the laptop's namespace and waits for its
// endpoints.
func (w *walker) startDaemon(ctx context.Context) error {
	conf, pol := w.file("mptcpd.conf"), w.file("policy")
	if err := os.WriteFile(conf, []byte("# the walk's mptcpd: defaults, the policy given on the command line\n"), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(pol, []byte(demoPolicy().Format()), 0o644); err != nil {
		return err
	}
	logFile, err := os.Create(w.file("mptcpd.log"))
	if err != nil {
		return err
	}
	w.daemonLog = logFile
	state := filepath.Join(w.cfg.Dir, "state")
	if err := os.RemoveAll(state); err != nil {
		return err
	}
	w.daemon = w.bed.Laptop.Command(context.WithoutCancel(ctx), w.cfg.Mptcpd,
		"--config", conf, "--policy", pol, "--state-dir", state, "--log=stderr")
	w.daemon.Stdout, w.daemon.Stderr = logFile, logFile
	if err := w.daemon.Start(); err != nil {
		w.daemon = nil
		return fmt.Errorf("walk: starting %s: %w", w.cfg.Mptcpd, err)
	}
	w.say("Path manager: %s, its built-in policy (wlan0 a subflow endpoint, wwan0 a backup one); log in %s.",
		w.cfg.Mptcpd, logFile.Name())
	want := []string{wlan(w.bed).Addr().String(), wwan(w.bed).Addr().String()}
	return w.waitUntil(ctx, "mptcpd's endpoints for "+strings.Join(want, " and "), func() (bool, error) {
		eps, err := w.endpoints()
		if err != nil {
			return false, err
		}
		for _, a := range want {
			if !slices.ContainsFunc(eps, func(e string) bool { return strings.HasPrefix(e, a+" ") }) {
				return false, nil
			}
		}
		return true, nil
	})
}

// startTrace records the laptop's links from now on.
func (w *walker) startTrace(ctx context.Context) error {
	var err error
	if w.sampler, err = trace.Start(ctx, trace.Config{NetNS: w.bed.Laptop.FD(), Interval: sampleEvery}); err != nil {
		return err
	}
	if w.traceFile, err = os.Create(w.file("walk.csv")); err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w.stopTrace, w.traceDone = stop, make(chan error, 1)
	go func() { w.traceDone <- w.sampler.Run(runCtx, trace.NewWriter(w.traceFile, trace.FormatCSV)) }()
	return nil
}

// waitSubflows waits until each flow has two established subflows: one
// per link.
func (w *walker) waitSubflows(ctx context.Context) error {
	diag, err := mptcpdiag.Dial(&mptcpdiag.Config{NetNS: w.bed.Laptop.FD()})
	if err != nil {
		return err
	}
	defer diag.Close()
	return w.waitUntil(ctx, "a subflow on each link for both connections", func() (bool, error) {
		conns, err := diag.Connections()
		if err != nil {
			return false, err
		}
		for _, f := range []*testbed.Flow{w.bulk, w.echo} {
			if c := f.Connection(conns); c == nil || c.Established() < 2 {
				return false, nil
			}
		}
		return true, nil
	})
}

// waitUntil polls cond until it holds, for setUpTimeout at most.
func (w *walker) waitUntil(ctx context.Context, what string, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, setUpTimeout)
	defer cancel()
	for {
		ok, err := cond()
		switch {
		case err != nil:
			return fmt.Errorf("walk: waiting for %s: %w", what, err)
		case ok:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("walk: no %s after %v", what, setUpTimeout)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// walk takes the steps, each announced with what to expect.
func (w *walker) walk(ctx context.Context) error {
	if err := sleep(ctx, warmUp); err != nil {
		return err
	}
	start := time.Now()
	tx, err := w.txBytes()
	if err != nil {
		return err
	}
	w.say("")
	for _, s := range steps {
		if err := w.sampler.Note(ctx, s.name); err != nil {
			return err
		}
		sr := StepReport{Name: s.name, Expect: s.expect, At: time.Now()}
		w.say("[%5.1f s] %s: %s", sr.At.Sub(start).Seconds(), s.name, s.expect)
		if s.event != nil {
			if err := s.event(w.bed); err != nil {
				return fmt.Errorf("walk: %s: %w", s.name, err)
			}
		}
		if err := sleep(ctx, time.Until(sr.At.Add(s.stay(&w.cfg)))); err != nil {
			return err
		}
		sr.End = time.Now()
		was := tx
		if tx, err = w.txBytes(); err != nil {
			return err
		}
		sr.Tx = map[string]float64{}
		for dev, n := range tx {
			sr.Tx[dev] = float64(n-was[dev]) * 8 / sr.End.Sub(sr.At).Seconds()
		}
		if sr.Endpoints, err = w.endpoints(); err != nil {
			return err
		}
		w.say("          sent %s; endpoints: %s", formatTx(sr.Tx), cmp.Or(strings.Join(sr.Endpoints, ", "), "none"))
		w.rep.Steps = append(w.rep.Steps, sr)
	}
	return nil
}

// finish stops the flows and the trace, measures the steps' stalls and
// draws the plot.
func (w *walker) finish(ctx context.Context) error {
	w.rep.Bulk, w.rep.Echo = w.bulk.Stop(stopGrace), w.echo.Stop(stopGrace)
	w.bulk, w.echo = nil, nil
	for i := range w.rep.Steps {
		s := &w.rep.Steps[i]
		s.BulkStall = w.rep.Bulk.Trace.MaxGapWithin(s.At, s.End).Len
		s.EchoStall = w.rep.Echo.Trace.MaxGapWithin(s.At, s.End).Len
	}
	if err := w.endTrace(); err != nil {
		return err
	}
	var stderr strings.Builder
	base := filepath.Join(w.cfg.Dir, "walk")
	if code := ctl.Main([]string{"plot", w.traceFile.Name(), "-o", base}, ctl.Env{Stdout: w.out, Stderr: &stderr}); code != 0 {
		return fmt.Errorf("walk: mptcpctl plot: exit %d: %s", code, strings.TrimSpace(stderr.String()))
	}
	w.rep.Files = append(w.rep.Files, base+".png", base+".svg")
	w.rep.Print(w.out)
	return ctx.Err()
}

// endTrace stops the sampler and closes the trace file, once.
func (w *walker) endTrace() error {
	if w.stopTrace == nil {
		return nil
	}
	w.stopTrace()
	w.stopTrace = nil
	return errors.Join(<-w.traceDone, w.sampler.Close(), w.traceFile.Close())
}

// close ends whatever still runs and removes the testbed.
func (w *walker) close() error {
	var errs []error
	for _, f := range []*testbed.Flow{w.bulk, w.echo} {
		if f != nil {
			f.Stop(0)
		}
	}
	errs = append(errs, w.endTrace())
	if w.daemon != nil {
		// SIGTERM: a clean stop, its last words in the log.
		_ = w.daemon.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- w.daemon.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				errs = append(errs, fmt.Errorf("walk: mptcpd: %w (see %s)", err, w.daemonLog.Name()))
			}
		case <-time.After(stopGrace):
			_ = w.daemon.Process.Kill()
			<-done
			errs = append(errs, fmt.Errorf("walk: mptcpd did not stop on SIGTERM within %v", stopGrace))
		}
	}
	if w.daemonLog != nil {
		errs = append(errs, w.daemonLog.Close())
	}
	if w.pm != nil {
		errs = append(errs, w.pm.Close())
	}
	if w.bed != nil {
		errs = append(errs, w.bed.Close())
	}
	return errors.Join(errs...)
}

// txBytes reads what the laptop's links sent so far.
func (w *walker) txBytes() (map[string]uint64, error) {
	links, err := w.bed.Laptop.Links()
	if err != nil {
		return nil, err
	}
	tx := map[string]uint64{}
	for _, l := range w.bed.Links {
		i := slices.IndexFunc(links, func(s testbed.LinkState) bool { return s.Name == l.Name })
		if i < 0 {
			return nil, fmt.Errorf("walk: the laptop has no %s", l.Name)
		}
		tx[l.Name] = links[i].TxBytes
	}
	return tx, nil
}

// endpoints lists the laptop's endpoints, "ADDR DEV FLAGS" each.
func (w *walker) endpoints() ([]string, error) {
	eps, err := w.pm.Endpoints()
	if err != nil {
		return nil, fmt.Errorf("walk: the laptop's endpoints: %w", err)
	}
	links, err := w.bed.Laptop.Links()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range eps {
		dev := "-"
		if i := slices.IndexFunc(links, func(l testbed.LinkState) bool { return l.Index == e.IfIndex }); i >= 0 {
			dev = links[i].Name
		}
		out = append(out, fmt.Sprintf("%s %s %s", e.Addr.Unmap(), dev, e.Flags))
	}
	slices.Sort(out)
	return out, nil
}

// sleep waits d, or less when ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
