package trace

import (
	"bytes"
	"context"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// TestSamplerKernel: in a fresh namespace, a veth link's life shows as
// event rows in order, and packets sent over it in its counters.
func TestSamplerKernel(t *testing.T) {
	a, b := nstest.New(t), nstest.New(t)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	s, err := Start(ctx, Config{NetNS: a.Handle().FD(), Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx, NewWriter(&out, FormatCSV)) }()
	finish := func() error {
		stop()
		err := <-done
		s.Close()
		return err
	}
	defer func() {
		if runCtx.Err() == nil { // failed before the end
			finish()
		}
	}()

	if err := s.Note(ctx, "before v0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Note(ctx, "bad\nnote"); err == nil {
		t.Error("Note took a newline")
	}
	nstest.Veth(t, a, "v0", b, "v1")
	a.MustRun("ip", "addr", "add", "10.9.0.1/24", "dev", "v0")
	b.MustRun("ip", "addr", "add", "10.9.0.2/24", "dev", "v1")
	const sent = 10
	if err := a.Handle().Do(func() error {
		// Unconnected: the port unreachable replies fail no write.
		c, err := net.ListenPacket("udp", ":0")
		if err != nil {
			return err
		}
		defer c.Close()
		to := &net.UDPAddr{IP: net.IPv4(10, 9, 0, 2), Port: 9}
		for range sent {
			if _, err := c.WriteTo([]byte("trace"), to); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // a round after the packets
	b.MustRun("ip", "link", "set", "v1", "down")
	a.MustRun("ip", "addr", "del", "10.9.0.1/24", "dev", "v0")
	a.MustRun("ip", "link", "del", "v0")
	time.Sleep(100 * time.Millisecond)
	if err := finish(); err != nil {
		t.Fatal(err)
	}

	recs, err := ReadAll(&out)
	if err != nil {
		t.Fatal(err)
	}
	var events []Event
	var index int
	var maxPackets uint64
	var notes []string
	for _, r := range recs {
		switch {
		case r.Kind == KindEvent && r.Event == EventNote:
			notes = append(notes, r.Detail)
			if len(events) > 0 {
				t.Errorf("note %q after v0's %v", r.Detail, events)
			}
		case r.Kind == KindEvent && r.Dev == "v0":
			events = append(events, r.Event)
			if index == 0 {
				index = r.IfIndex
			} else if r.IfIndex != index {
				t.Errorf("%s event of v0 on ifindex %d, v0 was added as %d", r.Event, r.IfIndex, index)
			}
		case r.Kind == KindLink && r.Dev == "v0":
			maxPackets = max(maxPackets, r.TxPackets)
		}
	}
	t.Logf("v0's events: %v", events)
	// In this order, with others (up, carrier) between.
	want := []Event{EventLinkAdded, EventAddrAdded, EventNoCarrier, EventAddrRemoved, EventLinkRemoved}
	rest := events
	for _, w := range want {
		i := slices.Index(rest, w)
		if i < 0 {
			t.Fatalf("v0's events %v lack %v in the order %v", events, w, want)
		}
		rest = rest[i+1:]
	}
	if !slices.Equal(notes, []string{"before v0"}) {
		t.Errorf("notes %q, want the one written before v0", notes)
	}
	if maxPackets < sent {
		t.Errorf("v0 sent at most %d packets by its counters, want ≥ %d\n%s", maxPackets, sent, out.String())
	}
}
