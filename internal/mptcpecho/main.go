// Command mptcpecho is the MPTCP echo server and client the integration
// tests run inside their network namespaces (through ip netns exec).
//
// Unlike a plain Go program it refuses a silent fallback to TCP, and it
// prints each connection's MPTCP token so that a test can match the lines of
// `ip mptcp monitor` to the connections it made:
//
//	mptcpecho serve [-lifetime D] ADDR:PORT...
//	    prints "listening ADDR:PORT" per listener, then "ready"; then
//	    "accept TOKEN LOCAL REMOTE" per connection, echoing each until EOF.
//	mptcpecho dial [-bytes N] [-subflows K] [-wait D] [-hold] ADDR:PORT
//	    prints "connected TOKEN LOCAL REMOTE", echoes N bytes, waits until
//	    the connection has K additional subflows ("subflows K"), and with
//	    -hold prints "held" and waits for a line or EOF on stdin before a
//	    second transfer; prints "done" after closing.
//
// Everything it prints goes to stdout, one line per event, flushed at once;
// errors go to stderr with exit status 1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcpsock"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "dial":
		err = dial(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "mptcpecho %s: %v\n", os.Args[1], err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: mptcpecho serve [-lifetime D] ADDR:PORT... | dial [-bytes N] [-subflows K] [-wait D] [-hold] ADDR:PORT")
	os.Exit(2)
}

// out serialises the event lines of concurrent connections.
var out struct {
	sync.Mutex
	w io.Writer
}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
}

func init() { out.w = os.Stdout }

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	// A bound on the lifetime keeps a forgotten server from outliving its
	// test even when nobody kills it.
	lifetime := fs.Duration("lifetime", 5*time.Minute, "exit after this long")
	_ = fs.Parse(args)
	if fs.NArg() == 0 {
		return errors.New("no listen address")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *lifetime)
	defer cancel()

	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for _, addr := range fs.Args() {
		ln, err := lc.Listen(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		// Go falls back to a TCP listener when MPTCP is unavailable.
		if err := requireMPTCPListener(ln); err != nil {
			return fmt.Errorf("listen %s: %w", addr, err)
		}
		lns = append(lns, ln)
		say("listening %s", ln.Addr())
	}
	say("ready")

	var wg sync.WaitGroup
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- acceptLoop(ctx, ln)
		}()
	}
	<-ctx.Done()
	// Open connections end with the process.
	for _, ln := range lns {
		ln.Close()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

func requireMPTCPListener(ln net.Listener) error {
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		return err
	}
	var proto int
	var serr error
	if err := rc.Control(func(fd uintptr) {
		proto, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PROTOCOL)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_PROTOCOL: %w", serr)
	}
	if proto != unix.IPPROTO_MPTCP {
		return fmt.Errorf("socket protocol %d, not MPTCP (%d)", proto, unix.IPPROTO_MPTCP)
	}
	return nil
}

func acceptLoop(ctx context.Context, ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		tc := c.(*net.TCPConn)
		info, err := connInfo(tc)
		if err != nil {
			c.Close()
			return fmt.Errorf("accept from %s: %w", c.RemoteAddr(), err)
		}
		say("accept %08x %s %s", info.Token, c.LocalAddr(), c.RemoteAddr())
		go func() {
			defer c.Close()
			// Echo until the peer closes; the monitor tests need the
			// connection to close from the client's side first.
			_, _ = io.Copy(tc, tc)
		}()
	}
}

func dial(args []string) error {
	fs := flag.NewFlagSet("dial", flag.ExitOnError)
	size := fs.Int("bytes", 64<<10, "bytes to echo per transfer")
	subflows := fs.Int("subflows", 0, "wait for this many additional subflows")
	wait := fs.Duration("wait", 20*time.Second, "bound on connecting, each transfer and the subflow wait")
	hold := fs.Bool("hold", false, "after the first transfer, wait for a line on stdin, then transfer again")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("want exactly one ADDR:PORT")
	}

	d := net.Dialer{Timeout: *wait}
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", fs.Arg(0))
	if err != nil {
		return err
	}
	defer c.Close()
	tc := c.(*net.TCPConn)
	info, err := connInfo(tc)
	if err != nil {
		return fmt.Errorf("connection to %s: %w", fs.Arg(0), err)
	}
	say("connected %08x %s %s", info.Token, c.LocalAddr(), c.RemoteAddr())

	if err := echo(tc, *size, *wait); err != nil {
		return err
	}
	if *subflows > 0 {
		n, err := waitSubflows(tc, *subflows, *wait)
		if err != nil {
			return err
		}
		say("subflows %d", n)
	}
	if *hold {
		say("held")
		// Any line or EOF releases the connection.
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
		if err := echo(tc, *size, *wait); err != nil {
			return err
		}
	}
	if err := c.Close(); err != nil {
		return err
	}
	say("done")
	return nil
}

// echo writes n pseudo-random bytes and checks that the same bytes come back.
func echo(c *net.TCPConn, n int, bound time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(bound)); err != nil {
		return err
	}
	defer c.SetDeadline(time.Time{})
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(rand.Uint32())
	}
	// Write concurrently: the echo comes back while we still send.
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(data)
		werr <- err
	}()
	got := make([]byte, n)
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo of %d bytes: %w", n, err)
	}
	if err := <-werr; err != nil {
		return fmt.Errorf("write %d bytes: %w", n, err)
	}
	if !bytes.Equal(got, data) {
		return errors.New("echoed data differs from what was sent")
	}
	return nil
}

func waitSubflows(c *net.TCPConn, want int, bound time.Duration) (int, error) {
	deadline := time.Now().Add(bound)
	for {
		info, err := connInfo(c)
		if err != nil {
			return 0, err
		}
		if int(info.Subflows) >= want {
			return int(info.Subflows), nil
		}
		if time.Now().After(deadline) {
			return int(info.Subflows), fmt.Errorf("%d additional subflows after %v, want %d", info.Subflows, bound, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// connInfo reads MPTCP_INFO; it fails on a connection that fell back to TCP,
// which is what makes fallback an error here.
func connInfo(c *net.TCPConn) (mptcpsock.Info, error) { return mptcpsock.Read(c) }
