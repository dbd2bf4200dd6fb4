package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mptcpd-go/mptcpd/endpoint/gate"
)

// chunk is how much one splice call may move before the copy loop looks
// at the clock again: small enough that a deadline per chunk tracks
// idleness, big enough that the extra system call is noise.
const chunk = 256 << 10

// Moved counts what a relayed connection carried.
type Moved struct {
	Up, Down int64 // client to destination, and back
	// Reset says the connection ended with a reset (a side reset it, an
	// error, or the idle timeout) rather than both sides closing.
	Reset bool
	Idle  bool // the idle timeout ended it
}

// pipe relays between client and remote until both directions end. Each
// direction is spliced by the kernel (net.TCPConn.ReadFrom). An end of
// stream on one side is passed on as a half-close of the other, so
// protocols that shut down one direction keep working; an error on either
// side — a reset, a broken pipe — resets both, so that each peer sees what
// it would have seen on a direct connection instead of a silent hang. No
// byte in either direction for idle (0: no limit) resets both too.
// beforeDown, when set, runs before the first byte goes back to the
// client; an error from it resets both.
func pipe(client, remote *net.TCPConn, idle time.Duration, beforeDown func() error) Moved {
	var (
		m       Moved
		quiet   [2]atomic.Bool // per direction: no byte in its last period, or ended
		once    sync.Once
		wg      sync.WaitGroup
		resetIt = func(idled bool) {
			once.Do(func() {
				m.Reset, m.Idle = true, idled
				gate.Reset(client)
				gate.Reset(remote)
			})
		}
	)
	// Each direction waits at most idle for bytes. One that waited in
	// vain is quiet; when the other is quiet too, the connection is idle
	// (for between idle and twice idle: a direction learns of the other's
	// bytes only when the other's period ends).
	copyOneWay := func(dir int, dst, src *net.TCPConn, n *int64) {
		defer wg.Done()
		for {
			if idle > 0 {
				_ = src.SetReadDeadline(time.Now().Add(idle))
			}
			k, err := io.CopyN(dst, src, chunk)
			*n += k
			switch {
			case err == nil:
				quiet[dir].Store(false)
			case errors.Is(err, io.EOF):
				quiet[dir].Store(true)
				_ = dst.CloseWrite()
				return
			case errors.Is(err, os.ErrDeadlineExceeded):
				quiet[dir].Store(k == 0)
				if k == 0 && quiet[1-dir].Load() {
					resetIt(true)
					return
				}
			default:
				resetIt(false)
				return
			}
		}
	}
	wg.Add(2)
	go copyOneWay(0, remote, client, &m.Up)
	go func() {
		if beforeDown != nil {
			if err := beforeDown(); err != nil {
				resetIt(false)
				wg.Done()
				return
			}
		}
		copyOneWay(1, client, remote, &m.Down)
	}()
	wg.Wait()
	if !m.Reset {
		_ = client.Close()
		_ = remote.Close()
	}
	return m
}
