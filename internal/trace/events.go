package trace

import (
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/mptcpd-go/mptcpd/nl/netmon"
)

// linkEvents applies ev to st and returns the event records of the
// change it made at time at: none for what changes nothing (a duplicate,
// a route, a link change other than its flags) or while emit is false (the
// first dump, which is the state before the trace, not a change).
func linkEvents(st *netmon.State, ev netmon.Event, at time.Time, emit bool) []Record {
	rec := func(index int, e Event, detail string) Record {
		r := Record{Time: at, Kind: KindEvent, IfIndex: index, Event: e, Detail: detail}
		if l, ok := st.Link(index); ok {
			r.Dev = printableText(l.Name)
		}
		return r
	}
	var out []Record
	switch ev := ev.(type) {
	case netmon.LinkEvent:
		old, had := st.Link(ev.Link.Index)
		if ev.Op == netmon.OpDel && had {
			out = append(out, rec(old.Index, EventLinkRemoved, "")) // named before it goes
		}
		if !st.Apply(ev) || ev.Op == netmon.OpDel {
			break
		}
		l := ev.Link
		switch {
		case !had:
			out = append(out, rec(l.Index, EventLinkAdded, ""))
		default:
			if l.Up != old.Up {
				out = append(out, rec(l.Index, pick(l.Up, EventUp, EventDown), ""))
			}
			if l.Carrier != old.Carrier {
				out = append(out, rec(l.Index, pick(l.Carrier, EventCarrier, EventNoCarrier), ""))
			}
		}
	case netmon.AddrEvent:
		a := ev.Addr
		had := slices.ContainsFunc(st.LinkAddrs(a.LinkIndex), func(o netmon.Addr) bool { return o.Key() == a.Key() })
		if !st.Apply(ev) {
			break
		}
		switch {
		case ev.Op == netmon.OpDel:
			out = append(out, rec(a.LinkIndex, EventAddrRemoved, a.Prefix.String()))
		case !had:
			out = append(out, rec(a.LinkIndex, EventAddrAdded, a.Prefix.String()))
		}
	case netmon.ResyncNeeded:
		st.Apply(ev)
		reason := "notifications lost"
		if ev.Reason != nil {
			reason = printableText(ev.Reason.Error())
		}
		out = append(out, Record{Time: at, Kind: KindEvent, Event: EventResync, Detail: reason})
	default:
		st.Apply(ev)
	}
	if !emit {
		return nil
	}
	return out
}

// pick is yes if b, else no.
func pick(b bool, yes, no Event) Event {
	if b {
		return yes
	}
	return no
}

// printableText replaces the control characters of s, which a record
// cannot carry, with spaces. Link names may have some: the kernel refuses
// only '/', ':' and white space in them.
func printableText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == unicode.ReplacementChar {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, " "))
}
