package netns_test

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
	"github.com/mptcpd-go/mptcpd/nl/netns"
)

func TestOpenEmptyIsOwnNamespace(t *testing.T) {
	h, err := netns.Open("")
	if err != nil || h != nil {
		t.Fatalf(`Open("") = %v, %v; want nil, nil`, h, err)
	}
	if fd := h.FD(); fd != 0 {
		t.Errorf("nil Handle FD = %d, want 0", fd)
	}
	if err := h.Close(); err != nil {
		t.Errorf("nil Handle Close: %v", err)
	}
	ran := false
	if err := h.Do(func() error { ran = true; return nil }); err != nil || !ran {
		t.Errorf("nil Handle Do: ran %v, err %v", ran, err)
	}
}

func TestOpenMissingNamesIt(t *testing.T) {
	for _, name := range []string{"mptcpd-no-such-ns", "/nonexistent/ns/net"} {
		_, err := netns.Open(name)
		if err == nil || !strings.Contains(err.Error(), name) || !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open(%q) = %v, want a not-exist error naming it", name, err)
		}
	}
}

// TestDoRunsInsideAndComesBack checks, by the namespace's inode, that Do
// runs fn in the namespace and that the caller's thread never leaves.
func TestDoRunsInsideAndComesBack(t *testing.T) {
	ns := nstest.New(t)
	h := ns.Handle()
	own := nsInode(t)
	var inside string
	if err := h.Do(func() (err error) {
		inside, err = os.Readlink("/proc/thread-self/ns/net")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if inside == own {
		t.Fatalf("Do ran fn in the caller's namespace %s", own)
	}
	st1, err := os.Stat(ns.Path())
	if err != nil {
		t.Fatal(err)
	}
	st2, err := os.Stat("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(st1, st2) {
		t.Error("the process moved into the test namespace")
	}
	if now := nsInode(t); now != own {
		t.Errorf("caller's namespace changed from %s to %s", own, now)
	}
	// Do reports fn's error.
	if err := h.Do(func() error { return os.ErrDeadlineExceeded }); err != os.ErrDeadlineExceeded {
		t.Errorf("Do returned %v, want fn's error", err)
	}
}

func nsInode(t *testing.T) string {
	t.Helper()
	s, err := os.Readlink("/proc/thread-self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	return s
}
