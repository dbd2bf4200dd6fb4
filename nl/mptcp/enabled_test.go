package mptcp

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

func TestParseEnabled(t *testing.T) {
	tests := []struct {
		in          string
		ok          bool
		unsupported bool
		msg         string
	}{
		{in: "1\n", ok: true},
		{in: "0\n", unsupported: true, msg: "net.mptcp.enabled=0"},
		{in: "2\n", msg: `unexpected net.mptcp.enabled value "2"`},
		{in: "", msg: `unexpected net.mptcp.enabled value ""`},
	}
	for _, tt := range tests {
		err := parseEnabled([]byte(tt.in))
		if tt.ok {
			if err != nil {
				t.Errorf("parseEnabled(%q) = %v, want nil", tt.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.msg) {
			t.Errorf("parseEnabled(%q) = %v, want an error containing %q", tt.in, err, tt.msg)
		}
		if got := errors.Is(err, ErrNotSupported); got != tt.unsupported {
			t.Errorf("parseEnabled(%q): Is(ErrNotSupported) = %v, want %v", tt.in, got, tt.unsupported)
		}
	}
}

func TestPMTypeName(t *testing.T) {
	for in, want := range map[string]string{"0\n": "kernel", "1\n": "userspace"} {
		if got, err := pmTypeName([]byte(in)); err != nil || got != want {
			t.Errorf("pmTypeName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := pmTypeName([]byte("7\n")); err == nil || !strings.Contains(err.Error(), `"7"`) {
		t.Errorf("pmTypeName(7) = %v, want an error naming the value", err)
	}
}

func TestPathManagerHere(t *testing.T) {
	name, err := PathManager(nil)
	if errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if name == "" {
		t.Fatal("PathManager returned an empty name")
	}
}

// TestSetPathManager switches a fresh namespace's path manager both ways
// and reads it back; the host's is never touched.
func TestSetPathManager(t *testing.T) {
	ns := nstest.New(t)
	cfg := &Config{NetNS: ns.Handle().FD()}
	if _, err := PathManager(cfg); errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	for _, name := range []string{"userspace", "kernel"} {
		if err := SetPathManager(cfg, name); err != nil {
			t.Fatalf("SetPathManager(%s): %v", name, err)
		}
		if got, err := PathManager(cfg); err != nil || got != name {
			t.Errorf("after SetPathManager(%s): %q, %v", name, got, err)
		}
	}
	if err := SetPathManager(cfg, "fancy"); err == nil || !strings.Contains(err.Error(), `unknown path manager "fancy"`) {
		t.Errorf("SetPathManager(fancy): %v", err)
	}
}

// TestEventListenerDeadline: a Receive with nothing to read gives up at
// the deadline with an error that Is os.ErrDeadlineExceeded.
func TestEventListenerDeadline(t *testing.T) {
	ns := nstest.New(t)
	l, err := ListenEvents(&Config{NetNS: ns.Handle().FD()})
	if errors.Is(err, ErrNotSupported) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := l.SetReadBuffer(1 << 20); err != nil {
		t.Fatalf("SetReadBuffer: %v", err)
	}
	if err := l.SetReadDeadline(time.Now().Add(10 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Receive(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Receive past the deadline: %v, want os.ErrDeadlineExceeded", err)
	}
}
