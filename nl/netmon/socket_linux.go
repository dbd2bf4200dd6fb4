package netmon

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// receiveBuffer is the initial size of a socket's datagram buffer. The
// kernel caps a dump's datagrams near 32 KiB, and a notification is one
// object; a larger datagram is reported truncated and the buffer grows.
const receiveBuffer = 64 << 10

var (
	// errTruncated says a datagram did not fit the buffer (it is lost).
	errTruncated = errors.New("datagram truncated")
	// errDumpInterrupted says the kernel flagged a dump NLM_F_DUMP_INTR.
	errDumpInterrupted = errors.New("the table changed while it was dumped (NLM_F_DUMP_INTR)")
	// aLongTimeAgo is a read deadline that has passed: it wakes a reader.
	aLongTimeAgo = time.Unix(1, 0)
)

// conn is one rtnetlink socket in the watched namespace. mdlayher's Conn
// creates it inside the namespace, sets its options and sends; receive
// reads raw datagrams through its SyscallConn into one reused buffer, so
// the reading goroutine parks in the netpoller (no blocking system call,
// no helper goroutine) and every message is decoded where it landed.
type conn struct {
	nl  *netlink.Conn
	raw syscall.RawConn
	buf []byte

	// The result of readFn, made once so that a receive allocates no
	// closure.
	n      int
	from   unix.Sockaddr
	err    error
	readFn func(fd uintptr) bool
}

var _ subscription = (*conn)(nil)

// dial opens a NETLINK_ROUTE socket in the namespace ns.
func dial(ns int) (*conn, error) {
	// Compare and create on one thread: mdlayher creates the socket on
	// the calling thread when Config.NetNS is 0. Entering the namespace
	// (setns) needs CAP_SYS_ADMIN, which watching one's own does not.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	same, err := inNetNS(ns)
	if err != nil {
		return nil, err
	}
	cfg := &netlink.Config{}
	if !same {
		cfg.NetNS = ns
	}
	nc, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, err
	}
	raw, err := nc.SyscallConn()
	if err != nil {
		nc.Close()
		return nil, err
	}
	c := &conn{nl: nc, raw: raw, buf: make([]byte, receiveBuffer)}
	c.readFn = func(fd uintptr) bool {
		for {
			// MSG_TRUNC: n is the datagram's real length.
			c.n, c.from, c.err = unix.Recvfrom(int(fd), c.buf, unix.MSG_TRUNC)
			if c.err != unix.EINTR {
				return c.err != unix.EAGAIN
			}
		}
	}
	return c, nil
}

// inNetNS reports whether the calling thread is in the namespace ns.
func inNetNS(ns int) (bool, error) {
	var want, have unix.Stat_t
	if err := unix.Fstat(ns, &want); err != nil {
		return false, os.NewSyscallError("fstat", err)
	}
	if err := unix.Stat("/proc/thread-self/ns/net", &have); err != nil {
		return false, err
	}
	return want.Dev == have.Dev && want.Ino == have.Ino, nil
}

// setReceiveBuffer sets SO_RCVBUF, beyond net.core.rmem_max when
// SO_RCVBUFFORCE is allowed (CAP_NET_ADMIN).
func (c *conn) setReceiveBuffer(bytes int) error {
	var forceErr error
	if err := c.raw.Control(func(fd uintptr) {
		forceErr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, bytes)
	}); err != nil {
		return err
	}
	if forceErr == nil {
		return nil
	}
	return c.nl.SetReadBuffer(bytes)
}

// receive waits for the next datagram from the kernel and returns its
// messages, which stay valid until the next receive. Datagrams from other
// sockets (anyone may send to our port ID) are dropped.
func (c *conn) receive() ([]syscall.NetlinkMessage, error) {
	for {
		if err := c.raw.Read(c.readFn); err != nil {
			return nil, err // closed, or the read deadline passed
		}
		if c.err != nil {
			return nil, os.NewSyscallError("recvfrom", c.err)
		}
		if c.n > len(c.buf) {
			size := len(c.buf)
			c.buf = make([]byte, (c.n+3)&^3)
			return nil, fmt.Errorf("%w: %d bytes, buffer %d", errTruncated, c.n, size)
		}
		if sa, ok := c.from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:c.n])
		if err != nil {
			return nil, fmt.Errorf("malformed datagram of %d bytes: %w", c.n, err)
		}
		return msgs, nil
	}
}

// pending reports whether a datagram is waiting. A socket error (ENOBUFS
// after an overrun) is returned here, as the kernel reports it only once.
func (c *conn) pending() (bool, error) {
	var peekErr error
	if err := c.raw.Control(func(fd uintptr) {
		_, _, peekErr = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC)
	}); err != nil {
		return false, err
	}
	switch peekErr {
	case nil:
		return true, nil
	case unix.EAGAIN:
		return false, nil
	}
	return false, os.NewSyscallError("recvfrom", peekErr)
}

// wake makes a receive under way, and every later one, fail at once. Any
// goroutine may call it.
func (c *conn) wake() { c.nl.SetReadDeadline(aLongTimeAgo) }

func (c *conn) close() { c.nl.Close() }

// dumpHeaders are the fixed headers of the dump requests: all zero, which
// asks for every family (and, without strict checking, every table).
var dumpHeaders = map[uint16]int{
	unix.RTM_GETLINK:  unix.SizeofIfInfomsg,
	unix.RTM_GETADDR:  unix.SizeofIfAddrmsg,
	unix.RTM_GETROUTE: unix.SizeofRtMsg,
}

// dump requests a dump and calls fn with each message of the reply. ended
// is false when the reply may still be arriving (the socket is then busy:
// the kernel runs one dump per socket at a time).
func (c *conn) dump(typ uint16, fn func(syscall.NetlinkMessage)) (ended bool, err error) {
	req, err := c.nl.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, dumpHeaders[typ]),
	})
	if err != nil {
		return true, err
	}
	r := dumpReader{seq: req.Header.Sequence, fn: fn}
	for {
		msgs, err := c.receive()
		if err != nil {
			return false, err
		}
		if done, err := r.read(msgs); done {
			return true, err
		}
	}
}

// dumpReader follows the reply to one dump request.
type dumpReader struct {
	seq         uint32
	fn          func(syscall.NetlinkMessage)
	interrupted bool
}

// read handles one datagram of the reply; done is true at its end. Messages
// of other requests (the rest of an abandoned dump) are skipped.
func (r *dumpReader) read(msgs []syscall.NetlinkMessage) (done bool, err error) {
	for _, m := range msgs {
		if m.Header.Seq != r.seq {
			continue
		}
		// The kernel may set NLM_F_DUMP_INTR on NLMSG_DONE alone.
		r.interrupted = r.interrupted || m.Header.Flags&unix.NLM_F_DUMP_INTR != 0
		switch m.Header.Type {
		case unix.NLMSG_DONE, unix.NLMSG_ERROR:
			// Both may carry an error code: a negative errno.
			if len(m.Data) >= 4 {
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					return true, syscall.Errno(-int64(code))
				}
			} else if m.Header.Type == unix.NLMSG_ERROR {
				return true, fmt.Errorf("NLMSG_ERROR of %d bytes", len(m.Data))
			}
			if r.interrupted {
				return true, errDumpInterrupted
			}
			return true, nil
		case unix.NLMSG_NOOP:
		default:
			r.fn(m)
		}
	}
	return false, nil
}
