package userspace_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/nl/mptcptest"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
	"github.com/mptcpd-go/mptcpd/pm/userspace/userspacetest"
)

func TestNew(t *testing.T) {
	k := mptcptest.NewKernel()
	c, err := k.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := k.ListenEvents()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	name, _ := newRecorder()
	ok := userspace.Config{Client: c, Events: l, Plugin: name, Policy: userspacetest.Policy()}

	tests := []struct {
		name    string
		edit    func(*userspace.Config)
		wantErr string
	}{
		{name: "ok", edit: func(*userspace.Config) {}},
		{name: "no client", edit: func(c *userspace.Config) { c.Client = nil }, wantErr: "Config.Client is nil"},
		{name: "no events", edit: func(c *userspace.Config) { c.Events = nil }, wantErr: "Config.Events is nil"},
		{name: "no policy", edit: func(c *userspace.Config) { c.Policy = nil }, wantErr: "Config.Policy is nil"},
		{name: "unknown plugin", edit: func(c *userspace.Config) { c.Plugin = "nosuch" }, wantErr: `unknown plugin "nosuch"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			e, err := userspace.New(cfg)
			if tt.wantErr == "" {
				if err != nil || e.Plugin() != name {
					t.Errorf("New = %v, %v; want an engine running %s", e, err, name)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("New error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// Run returns nil when its context ends and an error when the event
// stream ends under it.
func TestRunEnds(t *testing.T) {
	tests := []struct {
		name    string
		stop    func(cancel context.CancelFunc, events interface{ Close() error })
		wantErr error
	}{
		{name: "context done", stop: func(cancel context.CancelFunc, _ interface{ Close() error }) { cancel() }},
		{name: "events closed", stop: func(_ context.CancelFunc, l interface{ Close() error }) { l.Close() }, wantErr: net.ErrClosed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := mptcptest.NewKernel()
			c, err := k.Dial()
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			l, err := k.ListenEvents()
			if err != nil {
				t.Fatal(err)
			}
			name, _ := newRecorder()
			e, err := userspace.New(userspace.Config{Client: c, Events: l, Plugin: name, Policy: userspacetest.Policy()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			tt.stop(cancel, l)
			err = <-done
			if (tt.wantErr == nil) != (err == nil) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Errorf("Run = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
