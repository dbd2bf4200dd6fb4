package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/pm"
	"github.com/mptcpd-go/mptcpd/pm/userspace"
	"github.com/mptcpd-go/mptcpd/policy"
)

// userspaceMode runs the plugin that path-manager names over the kernel's
// userspace path manager. The engine loop feeds it the network after
// every change; its event loop starts once it has seen the first one, so
// that the connections already open meet a plugin that knows the usable
// addresses.
type userspaceMode struct {
	eng      *userspace.Engine
	events   *mptcp.EventListener
	diag     *mptcpdiag.Client // nil in tests
	commands *commandLog       // the plugin's latest commands per connection

	cancel context.CancelFunc
	done   chan error // the event loop's result, once started
	ticker *time.Ticker
}

// eventBuffer is the mptcp_pm event socket's receive buffer: ~5000
// events.
const eventBuffer = 4 << 20

// statusEvery is how often the userspace mode refreshes its STATUS line
// (the connection count changes without any network event).
const statusEvery = 2 * time.Second

// startUserspace subscribes to the mptcp_pm events and builds the engine
// for the plugin conf names, its events and commands tapped for ctl.
func startUserspace(client *mptcp.Client, conf *policy.Config, p *policy.Policy, buffer int, ctl *controlPlane, log *slog.Logger) (*userspaceMode, error) {
	events, err := mptcp.ListenEvents(nil)
	if err != nil {
		return nil, fmt.Errorf("userspace path manager: %w", err)
	}
	// Each event costs ~832 bytes of buffer: the default holds ~256, a
	// burst of new connections more. Lost events cost a table rebuild.
	if buffer == 0 {
		buffer = eventBuffer
	}
	if err := events.SetReadBuffer(buffer); err != nil {
		log.Warn("could not size the mptcp_pm event buffer", "bytes", buffer, "err", err)
	}
	diag, err := mptcpdiag.Dial(nil)
	if err != nil {
		events.Close()
		return nil, fmt.Errorf("userspace path manager: %w", err)
	}
	u, err := newUserspaceMode(client, events, diag, conf.PathManager, p, ctl, log)
	if err != nil {
		events.Close()
		diag.Close()
		return nil, err
	}
	u.diag = diag
	return u, nil
}

// newUserspaceMode builds the engine for plugin over client and events,
// both tapped for ctl. lister may be nil (tests).
func newUserspaceMode(client userspace.Client, events *mptcp.EventListener, lister userspace.Lister, plugin string, p *policy.Policy, ctl *controlPlane, log *slog.Logger) (*userspaceMode, error) {
	commands := newCommandLog()
	tap := &eventTap{EventListener: events, ctl: ctl, commands: commands}
	eng, err := userspace.New(userspace.Config{
		Client: &commandTap{Client: client, plugin: plugin, ctl: ctl, commands: commands},
		Events: tap, Lister: lister, Plugin: plugin, Policy: p, Log: log,
	})
	if err != nil {
		return nil, err
	}
	tap.eng = eng
	return &userspaceMode{eng: eng, events: events, commands: commands, ticker: time.NewTicker(statusEvery)}, nil
}

// network hands the engine the current network and policy, and starts
// its event loop the first time.
func (u *userspaceMode) network(n pm.Network, p *policy.Policy) {
	u.eng.SetNetwork(n, p)
	if u.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan error, 1)
	go func() { u.done <- u.eng.Run(ctx) }()
}

// statusTick is the refresh of the STATUS line; nil (never) outside the
// userspace mode.
func (u *userspaceMode) statusTick() <-chan time.Time {
	if u == nil {
		return nil
	}
	return u.ticker.C
}

// ended delivers the event loop's error if it stops by itself (the
// event stream broke); nil until the loop runs.
func (u *userspaceMode) ended() <-chan error {
	if u == nil {
		return nil
	}
	return u.done
}

// status is the line for systemd.
func (u *userspaceMode) status() string {
	st := u.eng.Stats()
	return fmt.Sprintf("STATUS=userspace plugin %s, %d connections", u.eng.Plugin(), st.Connections)
}

// stop ends the event loop (Run closes the event socket) and waits.
func (u *userspaceMode) stop() error {
	u.ticker.Stop()
	if u.diag != nil {
		defer u.diag.Close()
	}
	if u.done == nil {
		return u.events.Close()
	}
	u.cancel()
	return <-u.done
}
