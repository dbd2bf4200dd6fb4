package gate

import (
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// TestServe: admitted connections reach the handler, one over the limit is
// reset, and done frees its place.
func TestServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g, err := Listen(ctx, Config{Listen: []string{"127.0.0.1:0"}, Limits: Limits{MaxConnections: 1, MaxPerSource: 1, Rate: 1000, Burst: 1000}})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan func(), 10)
	served := make(chan error, 1)
	go func() {
		served <- g.Serve(ctx, func(c *net.TCPConn, done func()) {
			_, _ = c.Write([]byte("hi"))
			release <- func() { c.Close(); done() }
		})
	}()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Error(err)
		}
	}()
	addr := g.Addrs()[0].String()
	greet := func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, 2)
		_, err = io.ReadFull(c, b)
		return err
	}
	if err := greet(); err != nil {
		t.Fatalf("first connection: %v", err)
	}
	free := <-release
	if err := greet(); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, io.EOF) {
		t.Fatalf("second connection at max-connections 1: %v, want a reset", err)
	}
	if got := g.Refused()[RefusedTotal]; got != 1 {
		t.Errorf("refused %v, want one max-connections", g.Refused())
	}
	free()
	if err := greet(); err != nil {
		t.Fatalf("after done: %v", err)
	}
	(<-release)()
}

func TestLimitsValidate(t *testing.T) {
	for _, l := range []Limits{{MaxConnections: -1}, {MaxConnections: 1, MaxPerSource: 2}, {Rate: -1}} {
		if l.Validate() == nil {
			t.Errorf("%+v: no error", l)
		}
	}
	if err := (Limits{MaxConnections: 2, MaxPerSource: 1, Rate: 1, Burst: 1}).Validate(); err != nil {
		t.Error(err)
	}
}
