package mptcptest

import (
	"iter"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// socket is an in-memory generic netlink socket of a Kernel. It implements
// netlink.Socket and the optional methods netlink.Conn looks for (groups,
// options, deadlines, buffer sizes), with the semantics of a real one:
// every reply is a datagram of its own, a dump arrives as one datagram,
// Receive blocks until a datagram or a close, a full receive buffer drops
// multicast messages and reports ENOBUFS once, and errors are the ones the
// Linux socket package returns.
type socket struct {
	k   *Kernel
	pid uint32

	mu        sync.Mutex
	queue     []datagram
	charged   int // receive-buffer bytes held by queued multicast datagrams
	rcvbuf    int
	sndbuf    int
	overrun   bool // sk_err = ENOBUFS pending
	congested bool // NETLINK_S_CONGESTED: drop until the queue drains
	closed    bool
	groups    map[uint32]bool
	opts      ackOptions
	noENOBUFS bool
	deadline  time.Time     // read deadline, zero for none
	wake      chan struct{} // closed and replaced on every state change
}

type datagram struct {
	msgs   []netlink.Message
	charge int
}

const (
	// defaultRcvbuf is net.core.rmem_default and rmem_max.
	defaultRcvbuf = 212992
	// minRcvbuf is SOCK_MIN_RCVBUF.
	minRcvbuf = 2304
	// eventTruesize is what one event costs in the receive buffer once
	// netlink_broadcast has trimmed it, measured on Linux 6.18: a socket
	// holds rcvbuf/832 events (256 with the default buffer, 2 with the
	// minimum).
	eventTruesize = 832
)

func newSocket(k *Kernel, pid uint32) *socket {
	return &socket{
		k:      k,
		pid:    pid,
		rcvbuf: defaultRcvbuf,
		sndbuf: defaultRcvbuf,
		groups: make(map[uint32]bool),
		// As netlink.Config{Strict: true}: extended acks on.
		opts: ackOptions{extAck: true},
		wake: make(chan struct{}),
	}
}

// netlink.NewConn, the only way to put a Conn over an in-memory socket,
// takes the deprecated Socket interface (mdlayher's nltest uses it too).
//
//lint:ignore SA1019 see above
var _ netlink.Socket = (*socket)(nil)

// notify wakes blocked readers; s.mu is held.
func (s *socket) notify() {
	close(s.wake)
	s.wake = make(chan struct{})
}

// Send hands one request to the kernel, which queues its answers before
// Send returns, as sendmsg on a netlink socket does.
func (s *socket) Send(m netlink.Message) error {
	s.mu.Lock()
	closed, opts := s.closed, s.opts
	s.mu.Unlock()
	if closed {
		return os.NewSyscallError("sendmsg", unix.EBADF)
	}
	replies := s.k.serve(m, opts)
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range replies {
		s.queue = append(s.queue, datagram{msgs: d})
	}
	if len(replies) > 0 {
		s.notify()
	}
	return nil
}

// SendMessages sends each message in turn.
func (s *socket) SendMessages(msgs []netlink.Message) error {
	for _, m := range msgs {
		if err := s.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// Receive returns the messages of the next datagram.
func (s *socket) Receive() ([]netlink.Message, error) {
	return s.next()
}

// ReceiveIter yields the messages of the next datagram.
func (s *socket) ReceiveIter() iter.Seq2[netlink.Message, error] {
	return func(yield func(netlink.Message, error) bool) {
		msgs, err := s.next()
		if err != nil {
			yield(netlink.Message{}, err)
			return
		}
		for _, m := range msgs {
			if !yield(m, nil) {
				return
			}
		}
	}
}

// next blocks for the next datagram. Like recvmsg, a pending ENOBUFS comes
// before queued data.
func (s *socket) next() ([]netlink.Message, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for blocked := false; ; blocked = true {
		switch {
		case s.closed && blocked:
			return nil, errFileClosing()
		case s.closed:
			return nil, os.NewSyscallError("recvmsg", unix.EBADF)
		case s.overrun:
			s.overrun = false
			return nil, os.NewSyscallError("recvmsg", unix.ENOBUFS)
		case len(s.queue) > 0:
			d := s.queue[0]
			s.queue = s.queue[1:]
			s.charged -= d.charge
			if len(s.queue) == 0 {
				s.congested = false // netlink_rcv_wake
			}
			return d.msgs, nil
		case !s.deadline.IsZero() && !time.Now().Before(s.deadline):
			return nil, os.ErrDeadlineExceeded
		}
		wake := s.wake
		var expired <-chan time.Time
		if !s.deadline.IsZero() {
			t := time.NewTimer(time.Until(s.deadline))
			defer t.Stop()
			expired = t.C
		}
		s.mu.Unlock()
		select {
		case <-wake:
		case <-expired:
		}
		s.mu.Lock()
	}
}

// errFileClosing is the error a real socket's blocked read returns when
// another goroutine closes it (internal/poll's "use of closed file"). The
// only way to get that exact value is to provoke it.
var errFileClosing = sync.OnceValue(func() error {
	r, w, err := os.Pipe()
	if err != nil {
		return os.ErrClosed
	}
	_ = w.Close()
	rc, err := r.SyscallConn()
	_ = r.Close()
	if err != nil {
		return os.ErrClosed
	}
	if err := rc.Read(func(uintptr) bool { return true }); err != nil {
		return err
	}
	return os.ErrClosed
})

// deliverMulticast queues a group message if the socket joined group and
// its receive buffer has room. Otherwise the message is lost and, unless
// NETLINK_NO_ENOBUFS, the next read fails with ENOBUFS and the socket drops
// every message until its queue is drained (netlink_overrun).
func (s *socket) deliverMulticast(group uint32, m netlink.Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || !s.groups[group] {
		return
	}
	if s.congested || s.charged+eventTruesize > s.rcvbuf {
		if !s.noENOBUFS && !s.congested {
			s.overrun, s.congested = true, true
			s.notify()
		}
		return
	}
	s.queue = append(s.queue, datagram{msgs: []netlink.Message{m}, charge: eventTruesize})
	s.charged += eventTruesize
	s.notify()
}

// loseEvents marks the socket overrun if it is in group.
func (s *socket) loseEvents(group uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed && s.groups[group] && !s.noENOBUFS {
		s.overrun = true
		s.notify()
	}
}

// Close closes the socket and wakes a blocked reader.
func (s *socket) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return os.NewSyscallError("close", unix.EBADF)
	}
	s.closed = true
	s.queue = nil
	s.notify()
	s.mu.Unlock()
	s.k.forget(s)
	return nil
}

// JoinGroup joins a multicast group (NETLINK_ADD_MEMBERSHIP).
func (s *socket) JoinGroup(group uint32) error {
	return s.setGroup("setsockopt", group, true)
}

// LeaveGroup leaves a multicast group (NETLINK_DROP_MEMBERSHIP).
func (s *socket) LeaveGroup(group uint32) error {
	return s.setGroup("setsockopt", group, false)
}

func (s *socket) setGroup(op string, group uint32, join bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return os.NewSyscallError(op, unix.EBADF)
	}
	if group == 0 {
		return os.NewSyscallError(op, unix.EINVAL)
	}
	if join {
		s.groups[group] = true
	} else {
		delete(s.groups, group)
	}
	return nil
}

// SetOption sets a netlink socket option; the ones that shape what the
// kernel sends (extended and capped acks, NETLINK_NO_ENOBUFS) take effect.
func (s *socket) SetOption(option netlink.ConnOption, enable bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return os.NewSyscallError("setsockopt", unix.EBADF)
	}
	switch option {
	case netlink.ExtendedAcknowledge:
		s.opts.extAck = enable
	case netlink.CapAcknowledge:
		s.opts.capAck = enable
	case netlink.NoENOBUFS:
		s.noENOBUFS = enable
	}
	return nil
}

// SetReadBuffer is SO_RCVBUF: the kernel doubles the value, bounded by
// rmem_max and SOCK_MIN_RCVBUF.
func (s *socket) SetReadBuffer(bytes int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rcvbuf = max(min(bytes, defaultRcvbuf)*2, minRcvbuf)
	return nil
}

// SetWriteBuffer is SO_SNDBUF; the fake never blocks on sending.
func (s *socket) SetWriteBuffer(bytes int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sndbuf = max(min(bytes, defaultRcvbuf)*2, minRcvbuf)
	return nil
}

// ReadBuffer reports the receive buffer size.
func (s *socket) ReadBuffer() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcvbuf, nil
}

// WriteBuffer reports the send buffer size.
func (s *socket) WriteBuffer() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sndbuf, nil
}

// SetDeadline sets the read deadline; writes never block.
func (s *socket) SetDeadline(t time.Time) error { return s.SetReadDeadline(t) }

// SetReadDeadline makes a blocked or later read fail with
// os.ErrDeadlineExceeded once t has passed; the zero time clears it.
func (s *socket) SetReadDeadline(t time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deadline = t
	s.notify()
	return nil
}

// SetWriteDeadline has nothing to do: writes never block.
func (s *socket) SetWriteDeadline(time.Time) error { return nil }
