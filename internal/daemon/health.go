package daemon

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/health"
	"github.com/mptcpd-go/mptcpd/policy"
)

// healthWatch is path health (pm/health): a sampler goroutine lists the
// subflows every period while there is a choice of paths, and the engine
// loop feeds each sample to the tracker and takes the failed paths' links
// out of the network it works with, so that their endpoints, and with
// them their subflows, go in the in-kernel mode, and the plugin closes
// their subflows in the userspace one (a link that is not usable has its
// addresses reported removed).
type healthWatch struct {
	tracker *health.Tracker
	samples chan healthSample
	// wanted tells the sampler whether a sample can change anything: two
	// or more paths, or one not healthy. The loop sets it after each pass.
	wanted atomic.Bool
	// wake rouses an idle sampler when samples are wanted again: it waits
	// on this rather than on its timer, so that a daemon with one path
	// does not wake every period for nothing.
	wake chan struct{}
	// untracked: apply found no failed path and left recording the
	// paths to settle, after the pass.
	untracked bool
	log       *slog.Logger
}

// dueSlack covers the tick of the kernel's clock (4 ms at HZ=250) in a
// subflow's last_ack_recv.
const dueSlack = 5 * time.Millisecond

type healthSample struct {
	at    time.Time
	conns []mptcpdiag.Connection
	err   error
}

// sampleSpacing bounds what sampling costs: after a listing that took d,
// the next one waits at least d × sampleSpacing. A listing costs about
// 6 µs per connection (kernel and decoding), so a gateway with thousands
// of connections would otherwise spend a third of a core on it; spaced,
// sampling takes about 5 % of a core at most, and a dead path is noticed
// later, by as much as the spacing adds.
const sampleSpacing = 20

// nextSample is the wait before the next listing: the period, or less
// when a subflow can be judged stuck sooner (due, 0: none; last_ack_recv
// counts in jiffies, so a few ms late, not early), but never less than
// the last listing's cost (took) allows.
func nextSample(period, due, took time.Duration) time.Duration {
	next := period
	if due > 0 && due+dueSlack < next {
		next = due + dueSlack
	}
	return max(next, took*sampleSpacing)
}

// startHealth starts sampling every period until ctx ends; nil when the
// period is 0 (path-health=off).
func startHealth(ctx context.Context, period time.Duration, log *slog.Logger) (*healthWatch, error) {
	if period <= 0 {
		return nil, nil
	}
	diag, err := mptcpdiag.Dial(nil)
	if err != nil {
		return nil, err
	}
	h := newHealthWatch(health.Config{}, log)
	go func() {
		defer diag.Close()
		h.sample(ctx, diag.ConnectionsIn, period)
	}()
	return h, nil
}

func newHealthWatch(cfg health.Config, log *slog.Logger) *healthWatch {
	return &healthWatch{tracker: health.NewTracker(cfg), samples: make(chan healthSample, 1), wake: make(chan struct{}, 1), log: log}
}

// sample lists the subflows every period while samples are wanted, and
// sleeps until woken while they are not.
func (h *healthWatch) sample(ctx context.Context, list func(mptcpdiag.States) ([]mptcpdiag.Connection, error), period time.Duration) {
	wait := time.NewTimer(period)
	defer wait.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-wait.C:
		case <-h.wake: // wanted again: a sample at once
		}
		if !h.wanted.Load() {
			continue // the timer stays stopped until a wake
		}
		start := time.Now()
		conns, err := list(health.SubflowStates())
		wait.Reset(nextSample(period, h.tracker.Due(conns), time.Since(start)))
		select {
		case h.samples <- healthSample{at: time.Now(), conns: conns, err: err}:
		case <-ctx.Done():
			return
		}
		if errors.Is(err, mptcp.ErrNotSupported) {
			return
		}
	}
}

// want tells the sampler whether samples are wanted, waking it when they
// are again.
func (h *healthWatch) want(on bool) {
	if h.wanted.Swap(on) != on && on {
		select {
		case h.wake <- struct{}{}:
		default: // a wake is pending already
		}
	}
}

// sampled is the loop's channel of samples; nil (never) when off.
func (h *healthWatch) sampled() <-chan healthSample {
	if h == nil {
		return nil
	}
	return h.samples
}

// observe judges one sample and reports the verdicts that changed.
func (h *healthWatch) observe(s healthSample) []health.Verdict {
	if s.err != nil {
		if errors.Is(s.err, mptcp.ErrNotSupported) {
			h.log.Warn("path health is off: the kernel cannot list subflows", "err", s.err)
		} else {
			h.log.Error("path health: listing subflows", "err", s.err)
		}
		return nil
	}
	changed := h.tracker.Observe(s.at, s.conns)
	for _, v := range changed {
		attrs := []any{"link", v.Name, "why", v.Why}
		switch v.State {
		case health.Failed:
			h.log.Warn("path failed, its endpoints withdrawn", append(attrs, "hold", v.Hold)...)
		case health.Probation:
			h.log.Info("path on probation, its endpoints back", attrs...)
		case health.Healthy:
			h.log.Info("path healthy again", attrs...)
		}
	}
	return changed
}

// apply returns network n with the failed paths' links made unusable;
// without path health it is n. With no path failed it is n as well, and
// recording n's paths is left to settle: a path only fails in a sample,
// never when recorded, so the pass's first kernel write need not wait for
// the desired-state function to run twice.
func (h *healthWatch) apply(n pm.Network, p *policy.Policy) pm.Network {
	if h == nil {
		return n
	}
	if !h.tracker.AnyFailed() {
		h.untracked = true
		return n
	}
	h.untracked = false
	failed := h.track(n, p)
	if len(failed) == 0 {
		return n
	}
	n.Links = slices.Clone(n.Links)
	for i, l := range n.Links {
		if j := slices.IndexFunc(failed, func(v health.Verdict) bool { return v.Link == l.Index }); j >= 0 && l.Usable {
			n.Links[i].Usable, n.Links[i].Why = false, "path health: "+failed[j].Why
		}
	}
	return n
}

// settle records the paths of n under p when apply left that for after
// the pass.
func (h *healthWatch) settle(n pm.Network, p *policy.Policy) {
	if h == nil || !h.untracked {
		return
	}
	h.untracked = false
	h.track(n, p)
}

// track records the paths of n under p and returns the failed ones. The
// paths come from the network before health took any out, so a failed
// path stays tracked until it comes back.
func (h *healthWatch) track(n pm.Network, p *policy.Policy) []health.Verdict {
	failed := h.tracker.Track(time.Now(), pathsOf(pm.Desired(n, p, pm.MaxEndpoints)))
	h.want(h.tracker.Active())
	return failed
}

// verdicts are every path's, for status; nil without path health.
func (h *healthWatch) verdicts() []health.Verdict {
	if h == nil {
		return nil
	}
	return h.tracker.Verdicts()
}

// pathsOf groups a plan's endpoint addresses by link.
func pathsOf(plan pm.Plan) []health.Path {
	var paths []health.Path
	for _, w := range plan.Endpoints {
		a := w.Endpoint.Addr.Unmap()
		i := slices.IndexFunc(paths, func(p health.Path) bool { return p.Link == w.Endpoint.IfIndex })
		if i < 0 {
			paths = append(paths, health.Path{Link: w.Endpoint.IfIndex, Name: w.Link})
			i = len(paths) - 1
		}
		if !slices.Contains(paths[i].Addrs, a) {
			paths[i].Addrs = append(paths[i].Addrs, a)
		}
	}
	return paths
}
