package relay

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
)

// DefaultDrainTimeout is how long a stopping relay or gateway lets its
// connections finish: well within systemd's default 90 s stop timeout,
// long enough for a page load or a short download to end on its own.
const DefaultDrainTimeout = 30 * time.Second

// drainer holds a role's connections through a shutdown: it waits for
// them to end, and ends the rest, with resets, when its time is up. A
// download cut at shutdown then fails at once and visibly, rather than
// the process's exit closing it as if it had finished.
type drainer struct {
	wg     sync.WaitGroup
	n      atomic.Int64    // works running
	ctx    context.Context // ended when draining gives up: connection work stops
	cancel context.CancelFunc
}

func newDrainer() *drainer {
	ctx, cancel := context.WithCancel(context.Background())
	return &drainer{ctx: ctx, cancel: cancel}
}

// run runs a connection's work, counted until it returns; work gets the
// context that ends when draining gives up.
func (d *drainer) run(work func(ctx context.Context)) {
	d.n.Add(1)
	d.wg.Go(func() {
		defer d.n.Add(-1)
		work(d.ctx)
	})
}

// track resets c when draining gives up; the returned stop forgets c.
func (d *drainer) track(c *net.TCPConn) (stop func() bool) {
	return context.AfterFunc(d.ctx, func() { gate.Reset(c) })
}

// drain waits up to timeout (negative: not at all) for the connections
// to end, then resets those left and waits for their work to return.
func (d *drainer) drain(timeout time.Duration, log *slog.Logger) {
	defer d.cancel()
	done := make(chan struct{})
	go func() { d.wg.Wait(); close(done) }()
	if n := d.n.Load(); n > 0 && timeout > 0 {
		log.Info("draining", "connections", n, "timeout", timeout)
	}
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
	if n := d.n.Load(); n > 0 {
		log.Warn("resetting the connections left", "connections", n)
	}
	d.cancel()
	<-done
}
