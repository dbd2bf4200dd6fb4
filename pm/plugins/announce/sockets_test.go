package announce_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/nl/netns"
	"github.com/mptcpd-go/mptcpd/pm/plugins/announce"
)

// eventWait bounds the wait for each kernel event.
const eventWait = 5 * time.Second

// On a real kernel, in a namespace of its own with the userspace path
// manager: a join to an address no listener covers is refused; once
// Sockets listens there (and never accepts), the same join is
// established, and the kernel reports the listener as the plugin expects.
// Both ends of the connection live in the namespace, on loopback
// addresses.
func TestSocketsServeJoins(t *testing.T) {
	ns := nstest.New(t)
	ns.MustRun("sysctl", "-q", "-w", "net.mptcp.path_manager=userspace")
	fd := ns.Handle().FD()
	events := listenEvents(t, fd)
	client, err := mptcp.Dial(&mptcp.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })

	server := netip.MustParseAddrPort("127.0.0.1:5000")
	announced := netip.MustParseAddrPort("127.0.0.2:5000") // local (lo holds 127/8), not listened on
	inNS(t, fd, func() error { return serve(t, server) })
	var conn net.Conn
	inNS(t, fd, func() error {
		var d net.Dialer
		d.SetMultipathTCP(true)
		conn, err = d.Dial("tcp4", server.String())
		return err
	})
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte("x")); err != nil { // full establishment needs data
		t.Fatal(err)
	}
	est := events.next(t, "ESTABLISHED of the client", func(ev mptcp.Event) bool {
		return ev.Type == mptcp.EventEstablished && !ev.ServerSide
	})

	join := func() mptcp.Event {
		t.Helper()
		local := mptcp.Endpoint{ID: 5, Addr: netip.MustParseAddr("127.0.0.3")}
		if err := client.CreateSubflow(est.Token, local, announced); err != nil {
			t.Fatalf("SUBFLOW_CREATE to %v: %v", announced, err)
		}
		return events.next(t, "the join's outcome", func(ev mptcp.Event) bool {
			return ev.Token == est.Token && ev.Daddr == announced.Addr() &&
				(ev.Type == mptcp.EventSubEstablished || ev.Type == mptcp.EventSubClosed)
		})
	}
	if ev := join(); ev.Type != mptcp.EventSubClosed {
		t.Fatalf("join to %v without a listener: %v, want SUB_CLOSED", announced, ev.Type)
	}

	var l io.Closer
	inNS(t, fd, func() error {
		l, err = announce.Sockets{}.Listen(announced)
		return err
	})
	events.next(t, "LISTENER_CREATED", func(ev mptcp.Event) bool {
		return ev.Type == mptcp.EventListenerCreated && netip.AddrPortFrom(ev.Saddr, ev.Sport) == announced
	})
	if ev := join(); ev.Type != mptcp.EventSubEstablished {
		t.Fatalf("join to %v with a listener: %v, want SUB_ESTABLISHED", announced, ev.Type)
	}

	// The plugin takes EADDRINUSE for "someone listens there already".
	inNS(t, fd, func() error {
		_, err := announce.Sockets{}.Listen(announced)
		if !errors.Is(err, syscall.EADDRINUSE) {
			t.Errorf("second Listen on %v: %v, want EADDRINUSE", announced, err)
		}
		return nil
	})

	// A new connection that lands on the listener is closed at once.
	inNS(t, fd, func() error {
		var d net.Dialer
		d.SetMultipathTCP(true)
		c, err := d.Dial("tcp4", announced.String())
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(eventWait))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("read from a connection to the plugin's listener: %d bytes, %v; want EOF", n, err)
		}
		return nil
	})

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	events.next(t, "LISTENER_CLOSED", func(ev mptcp.Event) bool {
		return ev.Type == mptcp.EventListenerClosed && netip.AddrPortFrom(ev.Saddr, ev.Sport) == announced
	})
}

func inNS(t *testing.T, fd int, fn func() error) {
	t.Helper()
	if err := netns.DoFD(fd, fn); err != nil {
		t.Fatal(err)
	}
}

// serve listens with MPTCP on at and reads whatever comes, until the
// test ends.
func serve(t *testing.T, at netip.AddrPort) error {
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	l, err := lc.Listen(context.Background(), "tcp4", at.String())
	if err != nil {
		return err
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return nil
}

// eventQueue is the namespace's mptcp_pm events, read by a goroutine.
// Listening also makes the kernel accept joins on userspace-PM
// connections.
type eventQueue chan mptcp.Event

func listenEvents(t *testing.T, fd int) eventQueue {
	l, err := mptcp.ListenEvents(&mptcp.Config{NetNS: fd})
	if err != nil {
		t.Fatal(err)
	}
	q := make(eventQueue, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			evs, err := l.Receive()
			if err != nil && !errors.Is(err, mptcp.ErrEventsLost) {
				return
			}
			for _, ev := range evs {
				q <- ev
			}
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for {
			select {
			case <-q: // unblock the reader
			case <-done:
				return
			}
		}
	})
	return q
}

// next returns the first event that matches, skipping others.
func (q eventQueue) next(t *testing.T, what string, match func(mptcp.Event) bool) mptcp.Event {
	t.Helper()
	deadline := time.After(eventWait)
	for {
		select {
		case ev := <-q:
			if match(ev) {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s within %v", what, eventWait)
		}
	}
}
