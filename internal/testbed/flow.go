package testbed

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
)

// connectTimeout bounds a flow's connection set-up.
const connectTimeout = 10 * time.Second

// FlowConfig chooses a flow's protocol and path. The zero value is an
// MPTCP flow to the server's first address, routed by the laptop's
// default routes.
type FlowConfig struct {
	TCP    bool       // plain TCP; otherwise MPTCP, and a fallback to TCP is an error
	Dev    string     // bind the laptop's socket to this link (SO_BINDTODEVICE)
	Server netip.Addr // the server's address to connect to; zero: its first
	// Interactive flows: one message of Size bytes every Every;
	// 0 means 64 bytes every 10 ms, an ssh session's keystrokes.
	Every time.Duration
	Size  int
}

// Flow is a connection from the laptop to the server carrying either a
// bulk upload or an interactive echo, logged on its receiving side.
type Flow struct {
	kind   string // "upload" or "interactive"
	ln     net.Listener
	client *net.TCPConn
	server *net.TCPConn
	mptcp  bool
	seed   uint64
	rx     *net.TCPConn // the side that receives and verifies

	stop     chan struct{}
	sendDone chan struct{}
	recvDone chan struct{}
	echoDone chan struct{} // interactive only

	mu        sync.Mutex
	trace     Trace
	received  int64
	verifier  *Verifier
	sent      int64
	sendTimes []time.Time // interactive: when each message was written
	rtts      []time.Duration
	sendErr   error
	recvErr   error
	eof       bool
	stopping  bool

	stopOnce sync.Once
	result   Result
}

// Result is what a flow did, from its start to Stop.
type Result struct {
	MPTCP    bool  // both ends use MPTCP (not a fallback to TCP)
	Sent     int64 // bytes written by the laptop
	Received int64 // bytes read by the receiving side
	Verified int64 // of those, bytes from the start that match the pattern
	// Survived: no error on either side, the receiver saw the end of the
	// stream within Stop's grace, and every byte sent arrived verified.
	Survived bool
	Err      error // why it did not survive
	Trace    Trace
	RTTs     []time.Duration // interactive: per message, write to echo
}

// Upload starts a bulk transfer from the laptop to the server: the
// laptop writes as fast as the path takes, the server logs and verifies
// each read.
func (b *Testbed) Upload(cfg FlowConfig) (*Flow, error) {
	f, err := b.newFlow("upload", cfg)
	if err != nil {
		return nil, err
	}
	f.rx = f.server
	go f.receive(nil)
	go f.bulkSend()
	return f, nil
}

// Interactive starts an ssh-like session: the laptop writes a small
// message at a steady pace, the server echoes it, and the laptop logs,
// verifies and times each echo.
func (b *Testbed) Interactive(cfg FlowConfig) (*Flow, error) {
	if cfg.Every == 0 {
		cfg.Every = 10 * time.Millisecond
	}
	if cfg.Size == 0 {
		cfg.Size = 64
	}
	f, err := b.newFlow("interactive", cfg)
	if err != nil {
		return nil, err
	}
	f.rx = f.client
	f.echoDone = make(chan struct{})
	go f.echo()
	go f.receive(func(now time.Time, verified int64) { f.timeEchoes(now, verified, cfg.Size) })
	go f.tickSend(cfg.Every, cfg.Size)
	return f, nil
}

func (b *Testbed) newFlow(kind string, cfg FlowConfig) (*Flow, error) {
	if b.isClosed() {
		return nil, errClosed
	}
	ln, client, server, err := b.connect(cfg)
	if err != nil {
		return nil, fmt.Errorf("testbed: %s: %w", kind, err)
	}
	f := &Flow{
		kind: kind, ln: ln, client: client, server: server, seed: rand.Uint64(),
		stop: make(chan struct{}), sendDone: make(chan struct{}), recvDone: make(chan struct{}),
	}
	f.verifier = NewVerifier(f.seed)
	cm, _ := client.MultipathTCP()
	sm, _ := server.MultipathTCP()
	f.mptcp = cm && sm
	if !cfg.TCP && !f.mptcp {
		ln.Close()
		client.Close()
		server.Close()
		return nil, fmt.Errorf("testbed: %s: MPTCP asked, the connection fell back to TCP (laptop %v, server %v)", kind, cm, sm)
	}
	b.mu.Lock()
	b.flows = append(b.flows, f)
	b.mu.Unlock()
	return f, nil
}

// connect opens a connection from the laptop to the server: the listener
// and the dialing socket are created inside their namespaces, and used
// from here on like any other. The listener stays open with the
// connection: MPTCP joins arrive through it.
func (b *Testbed) connect(cfg FlowConfig) (ln net.Listener, client, server *net.TCPConn, err error) {
	dst := cfg.Server
	if !dst.IsValid() {
		dst = b.serverAddrs[0]
	}
	lc := net.ListenConfig{Control: setsockopts("", b.congestion)}
	lc.SetMultipathTCP(!cfg.TCP)
	if err := b.Server.Do(func() (err error) {
		ln, err = lc.Listen(context.Background(), "tcp4", netip.AddrPortFrom(dst, 0).String())
		return err
	}); err != nil {
		return nil, nil, nil, fmt.Errorf("listen on the server: %w", err)
	}
	defer func() {
		if err != nil {
			ln.Close()
		}
	}()
	tl := ln.(*net.TCPListener)
	_ = tl.SetDeadline(time.Now().Add(connectTimeout))
	type accepted struct {
		c   *net.TCPConn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := tl.AcceptTCP()
		acc <- accepted{c, err}
	}()

	d := net.Dialer{Timeout: connectTimeout, Control: setsockopts(cfg.Dev, b.congestion)}
	d.SetMultipathTCP(!cfg.TCP)
	var c net.Conn
	if err := b.Laptop.Do(func() (err error) {
		c, err = d.Dial("tcp4", tl.Addr().String())
		return err
	}); err != nil {
		_ = tl.Close()
		<-acc
		return nil, nil, nil, fmt.Errorf("dial %s from the laptop: %w", tl.Addr(), err)
	}
	a := <-acc
	if a.err != nil {
		c.Close()
		return nil, nil, nil, fmt.Errorf("accept on the server: %w", a.err)
	}
	return ln, c.(*net.TCPConn), a.c, nil
}

// setsockopts is a socket's Control: bound to dev unless "", with the
// congestion control cc. An MPTCP socket passes both on to its subflows.
func setsockopts(dev, cc string) func(_, _ string, rc syscall.RawConn) error {
	return func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			if dev != "" {
				if err := unix.SetsockoptString(int(fd), unix.SOL_SOCKET, unix.SO_BINDTODEVICE, dev); err != nil {
					serr = fmt.Errorf("SO_BINDTODEVICE %s: %w", dev, err)
					return
				}
			}
			if err := unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, cc); err != nil {
				serr = fmt.Errorf("TCP_CONGESTION %s: %w", cc, err)
			}
		}); err != nil {
			return err
		}
		return serr
	}
}

// bulkSend writes the pattern until Stop.
func (f *Flow) bulkSend() {
	defer close(f.sendDone)
	p := NewPattern(f.seed)
	buf := make([]byte, 64<<10)
	for {
		select {
		case <-f.stop:
			return
		default:
		}
		_, _ = p.Read(buf)
		n, err := f.client.Write(buf)
		f.mu.Lock()
		f.sent += int64(n)
		f.mu.Unlock()
		if err != nil {
			f.sendFailed(err)
			return
		}
	}
}

// tickSend writes one message of size bytes every period until Stop.
// A message that could not be written on time is sent late, not twice:
// the ticker drops the ticks missed meanwhile.
func (f *Flow) tickSend(every time.Duration, size int) {
	defer close(f.sendDone)
	p := NewPattern(f.seed)
	buf := make([]byte, size)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		_, _ = p.Read(buf)
		f.mu.Lock()
		f.sendTimes = append(f.sendTimes, time.Now())
		f.mu.Unlock()
		n, err := f.client.Write(buf)
		f.mu.Lock()
		f.sent += int64(n)
		f.mu.Unlock()
		if err != nil {
			f.sendFailed(err)
			return
		}
	}
}

// sendFailed records a write error, unless Stop caused it.
func (f *Flow) sendFailed(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !(f.stopping && errors.Is(err, os.ErrDeadlineExceeded)) {
		f.sendErr = fmt.Errorf("%s: laptop write: %w", f.kind, err)
	}
}

// echo returns what the server reads until the laptop ends its stream.
func (f *Flow) echo() {
	defer close(f.echoDone)
	_, _ = io.Copy(f.server, f.server)
	_ = f.server.CloseWrite()
}

// receive reads f.rx until the end of the stream or an error, logging
// and verifying each read; after calls back with the bytes verified.
func (f *Flow) receive(after func(now time.Time, verified int64)) {
	defer close(f.recvDone)
	buf := make([]byte, 64<<10)
	side := "server"
	if f.rx == f.client {
		side = "laptop"
	}
	for {
		n, err := f.rx.Read(buf)
		now := time.Now()
		if n > 0 {
			_, verr := f.verifier.Write(buf[:n])
			f.mu.Lock()
			f.trace = append(f.trace, Sample{At: now, Bytes: n})
			f.received += int64(n)
			if verr != nil && f.recvErr == nil {
				f.recvErr = fmt.Errorf("%s: %s read: %w", f.kind, side, verr)
			}
			f.mu.Unlock()
			if after != nil {
				after(now, f.verifier.Verified())
			}
		}
		if err != nil {
			f.mu.Lock()
			if err == io.EOF {
				f.eof = true
			} else if f.recvErr == nil {
				f.recvErr = fmt.Errorf("%s: %s read: %w", f.kind, side, err)
			}
			f.mu.Unlock()
			return
		}
	}
}

// timeEchoes records the round trip of every message whose echo is now
// complete.
func (f *Flow) timeEchoes(now time.Time, verified int64, size int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for done := int(verified / int64(size)); len(f.rtts) < done && len(f.rtts) < len(f.sendTimes); {
		f.rtts = append(f.rtts, now.Sub(f.sendTimes[len(f.rtts)]))
	}
}

// Conn is the laptop's socket, for socket options (TCP_INFO,
// MPTCP_INFO) of the flow.
func (f *Flow) Conn() *net.TCPConn { return f.client }

// Connection finds the flow's connection in a dump of the laptop's
// connections; nil when it is not there.
func (f *Flow) Connection(conns []mptcpdiag.Connection) *mptcpdiag.Connection {
	local := f.client.LocalAddr().(*net.TCPAddr).AddrPort()
	for i := range conns {
		c := &conns[i]
		if !c.Listening() && c.Local.Port() == local.Port() && c.Local.Addr().Unmap() == local.Addr().Unmap() {
			return c
		}
	}
	return nil
}

// MPTCP reports whether both ends use MPTCP.
func (f *Flow) MPTCP() bool { return f.mptcp }

// Received is how many bytes the receiving side has read so far.
func (f *Flow) Received() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.received
}

// Trace is a copy of the receive log so far.
func (f *Flow) Trace() Trace {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append(Trace(nil), f.trace...)
}

// Stop ends the flow: the laptop stops writing and closes its side, and
// the receiver has grace to read the rest of the stream before both
// sockets close. It returns the flow's Result; later calls return the
// same.
func (f *Flow) Stop(grace time.Duration) Result {
	f.stopOnce.Do(func() { f.result = f.finish(grace) })
	return f.result
}

func (f *Flow) finish(grace time.Duration) Result {
	f.mu.Lock()
	f.stopping = true
	f.mu.Unlock()
	close(f.stop)
	// A write blocked on a stalled path returns at once.
	_ = f.client.SetWriteDeadline(time.Now())
	<-f.sendDone
	var closeErr error
	if err := f.client.CloseWrite(); err != nil {
		closeErr = fmt.Errorf("%s: laptop close: %w", f.kind, err)
	}
	_ = f.rx.SetReadDeadline(time.Now().Add(grace))
	<-f.recvDone
	f.client.Close()
	f.server.Close()
	f.ln.Close()
	if f.echoDone != nil {
		<-f.echoDone
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	r := Result{
		MPTCP: f.mptcp, Sent: f.sent, Received: f.received, Verified: f.verifier.Verified(),
		Trace: f.trace, RTTs: f.rtts,
	}
	switch {
	case f.sendErr != nil:
		r.Err = f.sendErr
	case f.recvErr != nil:
		r.Err = f.recvErr
	case closeErr != nil:
		r.Err = closeErr
	case !f.eof:
		r.Err = fmt.Errorf("%s: no end of stream", f.kind)
	case r.Verified != r.Sent:
		r.Err = fmt.Errorf("%s: %d bytes sent, %d arrived verified", f.kind, r.Sent, r.Verified)
	}
	r.Survived = r.Err == nil
	return r
}
