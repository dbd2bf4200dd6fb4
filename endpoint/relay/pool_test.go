package relay

import (
	"bufio"
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// echoOnce relays one line through the gateway's SOCKS listener to dst.
func echoOnce(t *testing.T, g *Gateway, dst *destination) {
	t.Helper()
	c := socksConnect(t, g, dst.addr)
	defer c.Close()
	if _, err := c.Write([]byte("ping\n")); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(c).ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
}

// TestWarmPool: the pool stays cold until a client comes, then fills;
// the next clients take established connections; they expire unused
// before the relay's handshake timeout, which the relay counts as unused,
// not refused; and the pool goes cold again once clients stop.
func TestWarmPool(t *testing.T) {
	dst := startDestination(t)
	r := startRelay(t, ServerConfig{})
	const age, keep = 300 * time.Millisecond, 1500 * time.Millisecond
	g := startGateway(t, r, GatewayConfig{WarmPool: 2, WarmAge: age, WarmKeep: keep})
	time.Sleep(100 * time.Millisecond)
	if p := g.Stats().Pool; p.Dialed != 0 {
		t.Fatalf("a pool nobody used dialed: %+v", p)
	}
	echoOnce(t, g, dst)
	if p := g.Stats().Pool; p.Misses != 1 || p.Hits != 0 {
		t.Fatalf("first client: %+v, want a miss", p)
	}
	waitFor(t, "pool filled", func() bool { return g.Stats().Pool.Idle == 2 })
	lastUse := time.Now()
	echoOnce(t, g, dst)
	if p := g.Stats().Pool; p.Hits != 1 {
		t.Fatalf("second client: %+v, want a hit", p)
	}
	// Unused connections expire and are replaced while the pool is warm.
	waitFor(t, "expired and replaced", func() bool { p := g.Stats().Pool; return p.Expired >= 2 && p.Idle == 2 })
	waitFor(t, "relay counts the expired as unused", func() bool { return r.Stats().Unused >= 2 })
	// Cold again after keep: everything expires, nothing replaces it.
	time.Sleep(time.Until(lastUse.Add(keep + age)))
	waitFor(t, "pool cold", func() bool { return g.Stats().Pool.Idle == 0 })
	dialed := g.Stats().Pool.Dialed
	time.Sleep(2 * age)
	p := g.Stats().Pool
	if p.Dialed != dialed || p.Idle != 0 {
		t.Errorf("a cold pool dialed: %d, then %+v", dialed, p)
	}
	if n := dst.accepted.Load(); n != 2 {
		t.Errorf("the destination saw %d connections, want the two clients'", n)
	}
	if st := r.Stats(); len(st.Refused) != 0 || st.Relayed != 2 {
		t.Errorf("relay: %+v, want two relayed and no refusal", st)
	}
}

// TestWarmPoolStale: pooled connections the relay reset (here by a
// handshake timeout shorter than the pool's age) are found out at take,
// and the client is served by a fresh dial.
func TestWarmPoolStale(t *testing.T) {
	dst := startDestination(t)
	r := startRelay(t, ServerConfig{HandshakeTimeout: 100 * time.Millisecond})
	g := startGateway(t, r, GatewayConfig{WarmPool: 1, WarmAge: time.Minute})
	echoOnce(t, g, dst)
	waitFor(t, "pool filled", func() bool { return g.Stats().Pool.Idle == 1 })
	waitFor(t, "relay reset the pooled connection", func() bool { return r.Stats().Refused["header-read"] >= 1 })
	echoOnce(t, g, dst)
	if p := g.Stats().Pool; p.Stale != 1 || p.Hits != 0 || p.Misses != 2 {
		t.Errorf("pool %+v, want one stale connection found and two misses", p)
	}
}

// TestWarmPoolBackoff: a relay that is down is not hammered: the pool
// backs off between failed dials.
func TestWarmPoolBackoff(t *testing.T) {
	var dials atomic.Int64
	p := newWarmPool(4, 0, 0, func(context.Context) (*net.TCPConn, error) {
		dials.Add(1)
		return nil, syscall.ECONNREFUSED
	}, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	if c := p.take(time.Now()); c != nil {
		t.Fatal("an empty pool gave a connection")
	}
	time.Sleep(time.Second)
	// 100 ms, 200, 400, 800: at most 5 dials in a second, and further
	// takes do not cut the back-off short.
	for range 10 {
		p.take(time.Now())
	}
	if n := dials.Load(); n == 0 || n > 5 {
		t.Errorf("%d dials in a second, want a few, backing off", n)
	}
	if st := p.snapshot(); st.Failed != int(dials.Load()) && st.Failed != int(dials.Load())-1 {
		t.Errorf("stats %+v after %d dials", st, dials.Load())
	}
}
