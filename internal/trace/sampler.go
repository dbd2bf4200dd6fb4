package trace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	vnl "github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/mptcpd-go/mptcpd/nl/mptcpdiag"
	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// DefaultInterval is the time between rounds when Config.Interval is 0.
const DefaultInterval = 100 * time.Millisecond

// How much of the kernel's structs holds the counters a trace records;
// a shorter struct comes from a kernel without them.
const (
	mptcpInfoCounters = 80  // struct mptcp_info up to mptcpi_bytes_acked (Linux 6.7)
	tcpInfoCounters   = 208 // struct tcp_info up to tcpi_bytes_sent (Linux 4.19)
)

// Config configures a Sampler.
type Config struct {
	// NetNS is the network namespace to trace, as a descriptor (nl/netns
	// Handle.FD()); 0 is the namespace of the calling thread at Start.
	NetNS int
	// Interval is the time between rounds; 0 means DefaultInterval.
	Interval time.Duration
	// Logger hears of rounds that could not read everything; nil
	// discards.
	Logger *slog.Logger
}

// Sampler records the counters and link events of one namespace.
type Sampler struct {
	interval time.Duration
	log      *slog.Logger
	links    *vnl.Handle
	diag     *mptcpdiag.Client
	mon      *netmon.Monitor
	state    *netmon.State
	warned   map[string]bool // problems of the kernel, logged once
	notes    chan Record     // from Note to Watch
}

// noteBacklog is how many notes may wait for Watch; Note blocks beyond.
const noteBacklog = 16

// Start opens the sockets of the sampler in the namespace and returns
// once the link monitor has the namespace's links and addresses, so that
// changes from then on are recorded. ctx bounds that wait and the
// monitor's life.
func Start(ctx context.Context, cfg Config) (*Sampler, error) {
	s := &Sampler{interval: cfg.Interval, log: cfg.Logger, state: netmon.NewState(), warned: map[string]bool{},
		notes: make(chan Record, noteBacklog)}
	if s.interval <= 0 {
		s.interval = DefaultInterval
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	var err error
	// Only rtnetlink: a handle otherwise opens a socket per protocol.
	if cfg.NetNS != 0 {
		s.links, err = vnl.NewHandleAt(vnetns.NsHandle(cfg.NetNS), unix.NETLINK_ROUTE)
	} else {
		s.links, err = vnl.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("trace: rtnetlink: %w", err)
	}
	if s.diag, err = mptcpdiag.Dial(&mptcpdiag.Config{NetNS: cfg.NetNS}); err != nil {
		s.Close()
		return nil, fmt.Errorf("trace: sock_diag: %w", err)
	}
	if s.mon, err = netmon.Start(ctx, netmon.Config{NetNS: cfg.NetNS, Logger: cfg.Logger}); err != nil {
		s.Close()
		return nil, fmt.Errorf("trace: link monitor: %w", err)
	}
	for !s.state.Synced() {
		select {
		case ev, ok := <-s.mon.Events():
			if !ok {
				s.Close()
				return nil, errors.New("trace: the link monitor stopped before its first dump")
			}
			linkEvents(s.state, ev, time.Time{}, false)
		case <-ctx.Done():
			s.Close()
			return nil, fmt.Errorf("trace: waiting for the link monitor's first dump: %w", ctx.Err())
		}
	}
	return s, nil
}

// Close releases the sockets, once Run has returned. It may be called more
// than once.
func (s *Sampler) Close() error {
	var errs []error
	if s.mon != nil {
		errs = append(errs, s.mon.Close())
	}
	if s.diag != nil {
		errs = append(errs, s.diag.Close())
	}
	if s.links != nil {
		s.links.Close()
		s.links = nil
	}
	return errors.Join(errs...)
}

// Run writes a round at once, then every interval, and the link events
// as they come, flushing w after each, until ctx ends: it then writes a
// last round and returns. It fails only when w does, or when the link monitor stops on its
// own; a round that cannot read something leaves it out and logs why.
func (s *Sampler) Run(ctx context.Context, w *Writer) error {
	write := func(recs []Record) error {
		if err := w.Write(recs...); err != nil {
			return err
		}
		return w.Flush()
	}
	if err := s.Watch(ctx, func(r Round) error { return write(r.Records) }, write); err != nil {
		return err
	}
	// A last round, so that the trace reaches its end.
	return write(s.round(time.Now()).Records)
}

// Note records text as an event of the trace, at the time of the call,
// beside the link events: Run writes it, Watch hands it to its events
// function. It is safe to call from any goroutine, and returns an error
// when the text is not printable (a control character, invalid UTF-8) or
// ctx ends before Watch took it.
func (s *Sampler) Note(ctx context.Context, text string) error {
	r := Record{Time: time.Now(), Kind: KindEvent, Event: EventNote, Detail: text}
	if err := r.check(); err != nil {
		return fmt.Errorf("trace: note: %w", err)
	}
	select {
	case s.notes <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("trace: note %q: %w", text, ctx.Err())
	}
}

// Round is one round of a Sampler as Watch hands it over: the records Run
// would write, and what a live view shows beside them.
type Round struct {
	Time time.Time
	// Records are the round's link, conn and subflow records.
	Records []Record
	// Links and Addrs are the namespace's links and addresses as the
	// link monitor knows them at Time.
	Links []netmon.Link
	Addrs []netmon.Addr
	// Conns are the MPTCP sockets the records were read from, listeners
	// included, with what records leave out (states, backup flags, RTTs).
	Conns []mptcpdiag.Connection
}

// Watch calls round with a round at once, then every interval, and
// events with the records of the link events as they come, on the
// calling goroutine, until ctx ends (it then returns nil), a call fails
// (its error is returned as is) or the link monitor stops on its own.
func (s *Sampler) Watch(ctx context.Context, round func(Round) error, events func([]Record) error) error {
	tick := time.NewTicker(s.interval)
	defer tick.Stop()
	if err := round(s.round(time.Now())); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := round(s.round(time.Now())); err != nil {
				return err
			}
		case ev, ok := <-s.mon.Events():
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return errors.New("trace: the link monitor stopped")
			}
			// A note made before the event was read goes first: select
			// picks at random among ready cases.
			if err := s.drainNotes(events); err != nil {
				return err
			}
			if recs := linkEvents(s.state, ev, time.Now(), true); len(recs) > 0 {
				if err := events(recs); err != nil {
					return err
				}
			}
		case r := <-s.notes:
			if err := events([]Record{r}); err != nil {
				return err
			}
		}
	}
}

// drainNotes passes on the notes waiting, without blocking.
func (s *Sampler) drainNotes(events func([]Record) error) error {
	for {
		select {
		case r := <-s.notes:
			if err := events([]Record{r}); err != nil {
				return err
			}
		default:
			return nil
		}
	}
}

// round reads every counter once; its records share the time at.
func (s *Sampler) round(at time.Time) Round {
	var recs []Record
	add := func(r Record) {
		if err := r.check(); err != nil {
			s.log.Warn("trace: record left out", "err", err)
			return
		}
		recs = append(recs, r)
	}
	names := map[int]string{}
	for _, l := range s.linkList() {
		a := l.Attrs()
		names[a.Index] = printableText(a.Name)
		if st := a.Statistics; st != nil {
			add(Record{Time: at, Kind: KindLink, IfIndex: a.Index, Dev: names[a.Index],
				RxBytes: st.RxBytes, TxBytes: st.TxBytes, RxPackets: st.RxPackets, TxPackets: st.TxPackets})
		}
	}
	conns, err := s.diag.ConnectionsIn(mptcpdiag.AllStates) // no listeners: a sample each period
	if err != nil {
		s.log.Warn("trace: listing MPTCP connections", "err", err)
	}
	owners := addrOwners(s.state.Addrs())
	for _, c := range conns {
		if c.Listening() {
			continue
		}
		token := c.Info.Token
		if c.Info.Size >= mptcpInfoCounters {
			add(Record{Time: at, Kind: KindConn, Token: token, Local: unmap(c.Local), Remote: unmap(c.Remote),
				RxBytes: c.Info.BytesReceived, TxBytes: c.Info.BytesSent, AckedBytes: c.Info.BytesAcked})
		} else {
			s.warnOnce("mptcp_info", "trace: the kernel's mptcp_info has no byte counters (Linux 6.7+): no conn records")
		}
		for _, sf := range c.Subflows {
			if sf.TCP.Size < tcpInfoCounters {
				s.warnOnce("tcp_info", "trace: the kernel's tcp_info has no tcpi_bytes_sent (Linux 4.19+): no subflow records")
				continue
			}
			index := sf.IfIndex
			if index == 0 {
				index = owners[sf.Local.Addr().Unmap()]
			}
			add(Record{Time: at, Kind: KindSubflow, IfIndex: index, Dev: names[index], Token: token,
				Local: unmap(sf.Local), Remote: unmap(sf.Remote),
				RxBytes: sf.TCP.BytesReceived, TxBytes: sf.TCP.BytesSent, AckedBytes: sf.TCP.BytesAcked})
		}
	}
	return Round{Time: at, Records: recs, Links: s.state.Links(), Addrs: s.state.Addrs(), Conns: conns}
}

// linkList dumps the links, again once if the dump was interrupted by a
// change (the kernel then flags it, and it may miss links).
func (s *Sampler) linkList() []vnl.Link {
	var (
		links []vnl.Link
		err   error
	)
	for range 2 {
		if links, err = s.links.LinkList(); !errors.Is(err, vnl.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		s.log.Warn("trace: listing links", "err", err)
		if !errors.Is(err, vnl.ErrDumpInterrupted) {
			return nil
		}
	}
	return links
}

func (s *Sampler) warnOnce(key, msg string) {
	if !s.warned[key] {
		s.warned[key] = true
		s.log.Warn(msg)
	}
}

// addrOwners maps each local address to the link that has it, or to 0
// when several links have it.
func addrOwners(addrs []netmon.Addr) map[netip.Addr]int {
	owners := map[netip.Addr]int{}
	for _, a := range addrs {
		ip := a.Prefix.Addr()
		if index, dup := owners[ip]; dup && index != a.LinkIndex {
			owners[ip] = 0
			continue
		}
		owners[ip] = a.LinkIndex
	}
	return owners
}

// unmap turns a 4-in-6 address (of an AF_INET6 socket) into IPv4.
func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
