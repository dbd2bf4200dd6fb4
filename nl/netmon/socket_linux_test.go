package netmon

import (
	"context"
	"encoding/binary"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestDumpReader(t *testing.T) {
	const seq = 7
	msg := func(typ, flags uint16, seq uint32, data []byte) syscall.NetlinkMessage {
		m := nlmsg(typ, flags, data)
		m.Header.Seq = seq
		return m
	}
	errno := func(e syscall.Errno) []byte {
		b := make([]byte, 4)
		binary.NativeEndian.PutUint32(b, uint32(-int32(e)))
		return b
	}
	link := encodeLink(veth(2, "va", true))
	tests := []struct {
		name     string
		datagram []syscall.NetlinkMessage
		wantMsgs int // passed to fn
		wantDone bool
		wantErr  error
	}{
		{
			name:     "entries, not done yet",
			datagram: []syscall.NetlinkMessage{msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, seq, link), msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, seq, link)},
			wantMsgs: 2,
		},
		{
			name: "an abandoned dump's rest is skipped",
			datagram: []syscall.NetlinkMessage{msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, seq-1, link), msg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq-1, errno(0)),
				msg(unix.NLMSG_NOOP, 0, seq, nil), msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, seq, link)},
			wantMsgs: 1,
		},
		{
			name:     "done",
			datagram: []syscall.NetlinkMessage{msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI, seq, link), msg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errno(0))},
			wantMsgs: 1, wantDone: true,
		},
		{name: "done without error code", datagram: []syscall.NetlinkMessage{msg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, nil)}, wantDone: true},
		{
			name:     "interrupted entry",
			datagram: []syscall.NetlinkMessage{msg(unix.RTM_NEWLINK, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, seq, link), msg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errno(0))},
			wantMsgs: 1, wantDone: true, wantErr: errDumpInterrupted,
		},
		{
			name:     "interrupted on NLMSG_DONE only",
			datagram: []syscall.NetlinkMessage{msg(unix.NLMSG_DONE, unix.NLM_F_MULTI|unix.NLM_F_DUMP_INTR, seq, errno(0))},
			wantDone: true, wantErr: errDumpInterrupted,
		},
		{
			name:     "error at the end",
			datagram: []syscall.NetlinkMessage{msg(unix.NLMSG_DONE, unix.NLM_F_MULTI, seq, errno(unix.EMSGSIZE))},
			wantDone: true, wantErr: unix.EMSGSIZE,
		},
		{
			name:     "refused",
			datagram: []syscall.NetlinkMessage{msg(unix.NLMSG_ERROR, 0, seq, append(errno(unix.EBUSY), make([]byte, 16)...))},
			wantDone: true, wantErr: unix.EBUSY,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := 0
			r := dumpReader{seq: seq, fn: func(m syscall.NetlinkMessage) {
				n++
				if m.Header.Seq != seq || m.Header.Type != unix.RTM_NEWLINK {
					t.Errorf("fn got %+v", m.Header)
				}
			}}
			done, err := r.read(tt.datagram)
			if done != tt.wantDone || !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Errorf("read = %v, %v; want %v, %v", done, err, tt.wantDone, tt.wantErr)
			}
			if n != tt.wantMsgs {
				t.Errorf("fn saw %d messages, want %d", n, tt.wantMsgs)
			}
		})
	}
	r := dumpReader{seq: seq}
	if _, err := r.read([]syscall.NetlinkMessage{msg(unix.NLMSG_ERROR, 0, seq, []byte{1})}); err == nil || err.Error() != "NLMSG_ERROR of 1 bytes" {
		t.Errorf("short NLMSG_ERROR: %v", err)
	}
}

// dialOwn opens a socket in the test's own namespace, which needs no
// privileges.
func dialOwn(t *testing.T) *conn {
	t.Helper()
	ns, err := pinNetNS(0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ns)
	c, err := dial(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func TestConnDump(t *testing.T) {
	c := dialOwn(t)
	for i := range 2 { // the second request has its own sequence number
		var links []Link
		ended, err := c.dump(unix.RTM_GETLINK, func(m syscall.NetlinkMessage) {
			evs, _, err := decodeMessage(m.Header.Type, m.Header.Flags, m.Data)
			if err != nil {
				t.Errorf("dump %d: %v", i, err)
			}
			for _, ev := range evs {
				links = append(links, ev.(LinkEvent).Link)
			}
		})
		if !ended || err != nil {
			t.Fatalf("dump %d: ended %v, %v", i, ended, err)
		}
		if len(links) == 0 {
			t.Errorf("dump %d: no links", i)
		}
	}
}

// TestConnDropsForeignDatagrams: any socket may send to our port ID; only
// the kernel's datagrams are notifications.
func TestConnDropsForeignDatagrams(t *testing.T) {
	c := dialOwn(t)
	if busy, err := c.pending(); busy || err != nil {
		t.Fatalf("pending on a new socket: %v, %v", busy, err)
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	forged := make([]byte, unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint32(forged[0:], unix.SizeofNlMsghdr)
	binary.NativeEndian.PutUint16(forged[4:], unix.RTM_DELLINK)
	switch err := unix.Sendto(fd, forged, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Pid: c.nl.PID()}); err {
	case nil:
	case unix.EPERM:
		t.Skip("sending to another rtnetlink socket needs CAP_NET_ADMIN")
	default:
		t.Fatal(err)
	}
	if busy, err := c.pending(); !busy || err != nil {
		t.Fatalf("pending with a datagram queued: %v, %v", busy, err)
	}
	c.nl.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if msgs, err := c.receive(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("receive = %v, %v; want the forged datagram dropped and a timeout", msgs, err)
	}
	// wake ends a receive at once.
	c.wake()
	start := time.Now()
	if _, err := c.receive(); !errors.Is(err, os.ErrDeadlineExceeded) || time.Since(start) > time.Second {
		t.Errorf("receive after wake: %v after %v", err, time.Since(start))
	}
}

func TestSnapshotOwnNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	s, err := Snapshot(ctx, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if !s.Synced() || len(s.Links()) == 0 {
		t.Errorf("Snapshot: synced %v, links %v", s.Synced(), s.Links())
	}
}
