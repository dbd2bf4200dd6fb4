package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Kind says what a record describes.
type Kind string

// The kinds of records.
const (
	KindLink    Kind = "link"    // one link's counters in a round
	KindConn    Kind = "conn"    // one MPTCP connection's counters in a round
	KindSubflow Kind = "subflow" // one TCP subflow's counters in a round
	KindEvent   Kind = "event"   // something that happened to a link
)

// sample reports whether k is one of the kinds a round is made of.
func (k Kind) sample() bool { return k == KindLink || k == KindConn || k == KindSubflow }

// Event is what happened, in a record of KindEvent.
type Event string

// The events recorded.
const (
	EventLinkAdded   Event = "link-added"
	EventLinkRemoved Event = "link-removed"
	EventUp          Event = "up"         // IFF_UP set
	EventDown        Event = "down"       // IFF_UP cleared
	EventCarrier     Event = "carrier"    // IFF_LOWER_UP set
	EventNoCarrier   Event = "no-carrier" // IFF_LOWER_UP cleared
	EventAddrAdded   Event = "addr-added"
	EventAddrRemoved Event = "addr-removed"
	EventResync      Event = "resync" // notifications were lost
	// EventNote is a remark of the program that recorded the trace, in
	// Detail: the steps of a scripted walk, say (Sampler.Note).
	EventNote Event = "note"
)

// Record is one row of a trace; see the package documentation for which
// fields each kind uses. Fields a kind does not use are zero.
type Record struct {
	Time    time.Time
	Kind    Kind
	IfIndex int
	Dev     string
	Token   mptcp.Token
	Local   netip.AddrPort
	Remote  netip.AddrPort

	RxBytes, TxBytes     uint64
	AckedBytes           uint64
	RxPackets, TxPackets uint64

	Event  Event
	Detail string
}

// timeFormat is RFC 3339 with all nine digits of the nanoseconds, so that
// the times of a trace sort as text too.
const timeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// column is one field of the record format: the kinds that have it (nil:
// all), how a record's value is written (false: the cell stays empty) and
// parsed. Both formats go through these, so a value reads back the same
// from either.
type column struct {
	name   string
	number bool // a JSON number rather than a string
	kinds  []Kind
	format func(r *Record) (string, bool)
	parse  func(r *Record, s string) error
}

// applies reports whether records of kind k have the column.
func (c *column) applies(k Kind) bool { return c.kinds == nil || slices.Contains(c.kinds, k) }

var (
	kindsWithLink = []Kind{KindLink, KindSubflow, KindEvent}
	kindsWithConn = []Kind{KindConn, KindSubflow}
)

// columns is the record format, in its order. kind comes before the
// columns that depend on it.
var columns = []column{
	{name: "time",
		format: func(r *Record) (string, bool) { return r.Time.UTC().Format(timeFormat), true },
		parse: func(r *Record, s string) (err error) {
			if r.Time, err = time.Parse(time.RFC3339Nano, s); err != nil {
				return errors.New("not an RFC 3339 time")
			}
			return nil
		}},
	{name: "kind",
		format: func(r *Record) (string, bool) { return string(r.Kind), true },
		parse: func(r *Record, s string) error {
			switch k := Kind(s); k {
			case KindLink, KindConn, KindSubflow, KindEvent:
				r.Kind = k
				return nil
			}
			return errors.New("unknown kind")
		}},
	{name: "ifindex", number: true, kinds: kindsWithLink,
		format: func(r *Record) (string, bool) { return strconv.Itoa(r.IfIndex), r.IfIndex != 0 },
		parse: func(r *Record, s string) error {
			n, err := strconv.ParseInt(s, 10, 32)
			if err == nil && n <= 0 {
				err = errors.New("not positive")
			}
			r.IfIndex = int(n)
			return err
		}},
	{name: "dev", kinds: kindsWithLink,
		format: func(r *Record) (string, bool) { return r.Dev, r.Dev != "" },
		parse:  func(r *Record, s string) error { r.Dev = s; return nil }},
	{name: "token", kinds: kindsWithConn,
		format: func(r *Record) (string, bool) { return r.Token.String(), true },
		parse: func(r *Record, s string) error {
			if len(s) != 8 {
				return errors.New("not 8 hex digits")
			}
			n, err := strconv.ParseUint(s, 16, 32)
			r.Token = mptcp.Token(n)
			return err
		}},
	{name: "local", kinds: kindsWithConn,
		format: func(r *Record) (string, bool) { return r.Local.String(), r.Local.IsValid() },
		parse:  func(r *Record, s string) (err error) { r.Local, err = netip.ParseAddrPort(s); return err }},
	{name: "remote", kinds: kindsWithConn,
		format: func(r *Record) (string, bool) { return r.Remote.String(), r.Remote.IsValid() },
		parse:  func(r *Record, s string) (err error) { r.Remote, err = netip.ParseAddrPort(s); return err }},
	counter("rx_bytes", func(r *Record) *uint64 { return &r.RxBytes }, KindLink, KindConn, KindSubflow),
	counter("tx_bytes", func(r *Record) *uint64 { return &r.TxBytes }, KindLink, KindConn, KindSubflow),
	counter("acked_bytes", func(r *Record) *uint64 { return &r.AckedBytes }, KindConn, KindSubflow),
	counter("rx_packets", func(r *Record) *uint64 { return &r.RxPackets }, KindLink),
	counter("tx_packets", func(r *Record) *uint64 { return &r.TxPackets }, KindLink),
	{name: "event", kinds: []Kind{KindEvent},
		format: func(r *Record) (string, bool) { return string(r.Event), r.Event != "" },
		parse:  func(r *Record, s string) error { r.Event = Event(s); return nil }},
	{name: "detail", kinds: []Kind{KindEvent},
		format: func(r *Record) (string, bool) { return r.Detail, r.Detail != "" },
		parse:  func(r *Record, s string) error { r.Detail = s; return nil }},
}

// counter is the column of a counter, which its kinds always write.
func counter(name string, field func(*Record) *uint64, kinds ...Kind) column {
	return column{name: name, number: true, kinds: kinds,
		format: func(r *Record) (string, bool) { return strconv.FormatUint(*field(r), 10), true },
		parse: func(r *Record, s string) (err error) {
			*field(r), err = strconv.ParseUint(s, 10, 64)
			return err
		}}
}

// check tells whether r can be written and read back as it is: the
// fields its kind needs are there, and its text fields are printable.
func (r *Record) check() error {
	if r.Time.IsZero() {
		return errors.New("no time")
	}
	if y := r.Time.UTC().Year(); y < 0 || y > 9999 {
		return errors.New("time out of RFC 3339's years")
	}
	switch r.Kind {
	case KindLink:
		if r.IfIndex <= 0 {
			return errors.New("link without ifindex")
		}
	case KindConn, KindSubflow:
		if !r.Local.IsValid() || !r.Remote.IsValid() {
			return fmt.Errorf("%s without local and remote addresses", r.Kind)
		}
	case KindEvent:
		if r.Event == "" {
			return errors.New("event without its name")
		}
	default:
		return fmt.Errorf("unknown kind %q", r.Kind)
	}
	if r.IfIndex < 0 || int64(r.IfIndex) > 1<<31-1 {
		return fmt.Errorf("ifindex %d out of range", r.IfIndex)
	}
	for _, f := range []struct{ name, s string }{
		{"dev", r.Dev}, {"event", string(r.Event)}, {"detail", r.Detail},
		{"local zone", r.Local.Addr().Zone()}, {"remote zone", r.Remote.Addr().Zone()},
	} {
		if !printable(f.s) {
			return fmt.Errorf("%s %q: not printable UTF-8", f.name, f.s)
		}
	}
	return nil
}

// printable reports whether s is valid UTF-8 without control characters,
// which CSV would not carry back unchanged (a quoted "\r\n" reads as "\n")
// and JSON would alter (invalid bytes become U+FFFD).
func printable(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, unicode.IsControl)
}
