package relay

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// pair is a connected pair of loopback TCP sockets.
func pair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err = net.DialTCP("tcp", nil, ln.Addr().(*net.TCPAddr))
	if err != nil {
		t.Fatal(err)
	}
	b, err = ln.AcceptTCP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	for _, c := range []*net.TCPConn{a, b} {
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return a, b
}

// relayed is client ↔ [pipe] ↔ remote: the test holds the outer ends.
func relayed(t *testing.T, idle time.Duration) (client, remote *net.TCPConn, moved <-chan Moved) {
	client, inner1 := pair(t)
	inner2, remote := pair(t)
	for _, c := range []*net.TCPConn{inner1, inner2} {
		_ = c.SetDeadline(time.Time{})
	}
	ch := make(chan Moved, 1)
	go func() { ch <- pipe(inner1, inner2, idle, nil) }()
	return client, remote, ch
}

func TestPipeHalfClose(t *testing.T) {
	client, remote, moved := relayed(t, 0)
	if _, err := client.Write([]byte("request")); err != nil {
		t.Fatal(err)
	}
	_ = client.CloseWrite()
	got, err := io.ReadAll(remote) // ends: the client's FIN came through
	if err != nil || string(got) != "request" {
		t.Fatalf("remote read %q, %v", got, err)
	}
	// The other direction still works after the half-close.
	if _, err := remote.Write([]byte("response")); err != nil {
		t.Fatal(err)
	}
	_ = remote.CloseWrite()
	got, err = io.ReadAll(client)
	if err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v", got, err)
	}
	m := <-moved
	if m.Up != 7 || m.Down != 8 || m.Reset {
		t.Errorf("moved %+v", m)
	}
}

func TestPipeResetPassesOn(t *testing.T) {
	client, remote, moved := relayed(t, 0)
	_ = remote.SetLinger(0)
	_ = remote.Close() // the destination resets
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read: %v, want a reset", err)
	}
	if m := <-moved; !m.Reset {
		t.Errorf("moved %+v, want a reset", m)
	}
}

func TestPipeIdle(t *testing.T) {
	client, remote, moved := relayed(t, 300*time.Millisecond)
	// Traffic one way only keeps it alive past the timeout.
	for range 6 {
		if _, err := remote.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, make([]byte, 1)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Then silence: both ends are reset.
	_, err := client.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("client read after idle: %v, want a reset", err)
	}
	if m := <-moved; !m.Idle || m.Down != 6 {
		t.Errorf("moved %+v, want an idle reset after 6 bytes", m)
	}
}
