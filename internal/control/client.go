package control

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// ErrNotRunning is matched (errors.Is) by Dial's error when no daemon
// answers on the socket.
var ErrNotRunning = errors.New("mptcpd is not running in this network namespace")

// NotRunningError says which socket did not answer, and how.
type NotRunningError struct {
	Path    string
	Missing bool // there is no socket file at all
}

func (e *NotRunningError) Error() string {
	if e.Missing {
		return fmt.Sprintf("%v (no %s)", ErrNotRunning, e.Path)
	}
	return fmt.Sprintf("%v (nothing answers on %s)", ErrNotRunning, e.Path)
}

func (e *NotRunningError) Is(target error) bool { return target == ErrNotRunning }

// RemoteError is an error reply of the daemon.
type RemoteError struct {
	Msg string
}

func (e *RemoteError) Error() string { return e.Msg }

const (
	dialTimeout = 5 * time.Second
	// DefaultTimeout bounds a request and its reply (a reload included).
	DefaultTimeout = 90 * time.Second
	// maxReply bounds a reply line: the connection table of a busy
	// server is large, but not this large.
	maxReply = 256 << 20
)

// Client speaks the control protocol to one daemon.
type Client struct {
	conn net.Conn
	r    *bufio.Reader
	// Timeout bounds each request and its reply; 0 for none. Events is
	// not bounded.
	Timeout time.Duration
}

// Dial connects to the daemon's socket at path. A missing socket, or one
// nothing answers on, is a *NotRunningError; one the caller may not use
// is an error that Is os.ErrPermission.
func Dial(path string) (*Client, error) {
	conn, err := net.DialTimeout("unix", path, dialTimeout)
	switch {
	case err == nil:
		return &Client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), Timeout: DefaultTimeout}, nil
	case errors.Is(err, syscall.ENOENT):
		return nil, &NotRunningError{Path: path, Missing: true}
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, &NotRunningError{Path: path}
	case errors.Is(err, os.ErrPermission):
		return nil, fmt.Errorf("control: %s: %w (root and the members of mptcpd.conf's control-group may connect)", path, os.ErrPermission)
	}
	return nil, fmt.Errorf("control: %w", err)
}

// Close closes the connection; it also ends Events.
func (c *Client) Close() error { return c.conn.Close() }

// Status asks for the daemon's status.
func (c *Client) Status() (Status, error) {
	var s Status
	return s, c.call(MethodStatus, &s)
}

// Explain asks for the decisions of the daemon's last pass.
func (c *Client) Explain() (Explain, error) {
	var x Explain
	return x, c.call(MethodExplain, &x)
}

// Connections asks for what the daemon knows of the connections.
func (c *Client) Connections() (Connections, error) {
	var cs Connections
	return cs, c.call(MethodConnections, &cs)
}

// Reload makes the daemon read its configuration again, as SIGHUP does,
// and returns once it has; a configuration the daemon refused is a
// *RemoteError with the reason.
func (c *Client) Reload() (Reloaded, error) {
	var r Reloaded
	return r, c.call(MethodReload, &r)
}

// Events asks for the event stream and calls fn with each event until
// fn returns an error (returned), the daemon ends the stream (its
// reason as a *RemoteError), or the connection ends (io.EOF: the daemon
// stopped, or Close was called).
func (c *Client) Events(fn func(Event) error) error {
	if err := c.send(MethodEvents, time.Time{}); err != nil {
		return err
	}
	_ = c.conn.SetReadDeadline(time.Time{})
	for {
		var ev Event
		if err := c.receive(&ev); err != nil {
			return err
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// call sends one request and decodes its reply into out.
func (c *Client) call(method string, out any) error {
	var deadline time.Time
	if c.Timeout > 0 {
		deadline = time.Now().Add(c.Timeout)
	}
	if err := c.send(method, deadline); err != nil {
		// A server that refuses the connection (too many clients, or
		// stopping) writes its reason and closes before reading: the
		// write fails, but the reason is waiting to be read.
		_ = c.conn.SetReadDeadline(time.Now().Add(time.Second))
		var re *RemoteError
		if rerr := c.receive(out); errors.As(rerr, &re) {
			return rerr
		}
		return err
	}
	_ = c.conn.SetReadDeadline(deadline)
	err := c.receive(out)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("control: %s: the daemon closed the connection", method)
	}
	return err
}

func (c *Client) send(method string, deadline time.Time) error {
	b, err := json.Marshal(Request{Method: method})
	if err != nil {
		return err
	}
	_ = c.conn.SetWriteDeadline(deadline)
	if _, err := c.conn.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("control: %s: %w", method, err)
	}
	return nil
}

// receive reads one reply line: an error reply, or out.
func (c *Client) receive(out any) error {
	line, err := readLine(c.r, maxReply)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return fmt.Errorf("control: read reply: %w", err)
	}
	var e struct {
		Error *string `json:"error"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return fmt.Errorf("control: malformed reply: %w", err)
	}
	if e.Error != nil {
		return &RemoteError{Msg: *e.Error}
	}
	if err := json.Unmarshal(line, out); err != nil {
		return fmt.Errorf("control: malformed reply: %w", err)
	}
	return nil
}
