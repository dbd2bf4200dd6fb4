package relay

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Defaults of a warm pool's zero settings.
const (
	// DefaultWarmAge is how long a pooled connection may wait for a
	// client: well within the relay's DefaultHandshakeTimeout, which
	// resets a connection whose header does not come.
	DefaultWarmAge = 5 * time.Second
	// DefaultWarmKeep is how long after the last use the pool stays
	// warm: a busy LAN gets its connections ready, an idle one costs the
	// relay nothing.
	DefaultWarmKeep = time.Minute
	// warmBackoffMax bounds the wait between failed dials.
	warmBackoffMax = 30 * time.Second
)

// warmPool keeps connections to the relay established ahead of need: a
// client's header and first bytes then leave at once, with no handshake
// to wait for, over subflows the path manager has already added (it adds
// them only once a handshake is over). Without Fast Open that saves a
// round trip over the ISPs on every new connection.
type warmPool struct {
	dial func(context.Context) (*net.TCPConn, error)
	size int
	age  time.Duration // a pooled connection's life
	keep time.Duration // how long after the last take the pool refills
	log  *slog.Logger

	mu      sync.Mutex
	idle    []pooled // oldest first
	lastUse time.Time
	wake    chan struct{} // a take or a close happened
	stats   PoolStats
}

type pooled struct {
	c    *net.TCPConn
	born time.Time
}

// PoolStats count what a warm pool did.
type PoolStats struct {
	Idle    int // connections waiting now
	Hits    int // takes served from the pool
	Misses  int // takes that found it empty (cold, or drained)
	Stale   int // pooled connections found closed by the relay
	Expired int // pooled connections closed unused at their age
	Dialed  int
	Failed  int // dials that failed
}

func newWarmPool(size int, age, keep time.Duration, dial func(context.Context) (*net.TCPConn, error), log *slog.Logger) *warmPool {
	if age <= 0 {
		age = DefaultWarmAge
	}
	if keep <= 0 {
		keep = DefaultWarmKeep
	}
	return &warmPool{dial: dial, size: size, age: age, keep: keep, log: log, wake: make(chan struct{}, 1)}
}

// take returns a pooled connection that is still open, or nil. It marks
// the pool in use, so that it refills.
func (p *warmPool) take(now time.Time) *net.TCPConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.signal()
	p.lastUse = now
	p.expire(now)
	for len(p.idle) > 0 {
		// The newest: the furthest from its age and from the relay's
		// handshake timeout.
		w := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if !open(w.c) {
			p.stats.Stale++
			w.c.Close()
			continue
		}
		p.stats.Hits++
		return w.c
	}
	p.stats.Misses++
	return nil
}

func (p *warmPool) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// open reports whether c has neither an end of stream nor an error
// waiting: the relay sends nothing before the header, so anything
// readable means it closed or reset the connection.
func open(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := unix.Recvfrom(int(fd), make([]byte, 1), unix.MSG_PEEK|unix.MSG_DONTWAIT)
		alive = n < 0 && errors.Is(rerr, syscall.EAGAIN)
		return true // never wait for readiness
	})
	return err == nil && alive
}

// run keeps the pool filled while it is in use, until ctx ends; then it
// closes what it holds.
func (p *warmPool) run(ctx context.Context) {
	var backoff time.Duration
	// Since Go 1.23 Reset needs no draining: a stopped or reset timer
	// delivers no stale tick.
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	defer p.drain()
	for {
		wait := p.tend(time.Now())
		if wait == 0 {
			c, err := p.dial(ctx)
			if ctx.Err() != nil {
				if c != nil {
					c.Close()
				}
				return
			}
			p.mu.Lock()
			if err != nil {
				p.stats.Failed++
				backoff = min(max(2*backoff, 100*time.Millisecond), warmBackoffMax)
				wait = backoff
			} else {
				p.stats.Dialed++
				backoff = 0
				p.idle = append(p.idle, pooled{c: c, born: time.Now()})
			}
			p.mu.Unlock()
			if err != nil {
				p.log.Debug("warm pool: dial failed", "err", err, "retry", wait)
			}
			if wait == 0 {
				continue
			}
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-p.wake:
			if backoff > 0 {
				// A take does not cut a failing relay's back-off short.
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
	}
}

// tend closes expired connections and says when to look again: 0 when a
// connection is wanted now.
func (p *warmPool) tend(now time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expire(now)
	next := p.age
	if len(p.idle) > 0 {
		next = p.age - now.Sub(p.idle[0].born)
	}
	if p.lastUse.IsZero() || now.Sub(p.lastUse) >= p.keep {
		return next // cold: only expiries to watch, until a take
	}
	if len(p.idle) < p.size {
		return 0
	}
	return min(next, p.keep-now.Sub(p.lastUse))
}

// expire closes the connections that reached their age; p.mu is held.
func (p *warmPool) expire(now time.Time) {
	live := p.idle[:0]
	for _, w := range p.idle {
		if now.Sub(w.born) >= p.age {
			p.stats.Expired++
			w.c.Close()
			continue
		}
		live = append(live, w)
	}
	clear(p.idle[len(live):])
	p.idle = live
}

func (p *warmPool) drain() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range p.idle {
		w.c.Close()
	}
	p.idle = nil
}

func (p *warmPool) snapshot() PoolStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := p.stats
	s.Idle = len(p.idle)
	return s
}
