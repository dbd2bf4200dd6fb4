package ctl

import (
	"bytes"
	"fmt"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Output formats. Text is byte for byte what `ip mptcp` of iproute2 6.1
// prints (trailing blanks included); JSON is what `ip -j [-p] mptcp` prints
// where 6.1 has it (endpoints), and the later iproute2 forms for limits and
// monitor events.

// LinkNamer resolves interface indexes of the target namespace to names.
type LinkNamer interface {
	// LinkName returns the name of link index, or false if there is none.
	LinkName(index int) (string, bool)
}

// format selects the output form.
type format struct {
	JSON   bool
	Pretty bool // indent JSON (ip -p); no effect on text
}

// printFlags are the endpoint flags ip 6.1 names when printing, in its
// order. Others (implicit, laminar, unknown) show as "rawflags %02x", as in
// ip 6.1, which predates their names.
var printFlags = []struct {
	flag mptcp.Flags
	name string
}{
	{mptcp.FlagSignal, "signal"},
	{mptcp.FlagSubflow, "subflow"},
	{mptcp.FlagBackup, "backup"},
	{mptcp.FlagFullmesh, "fullmesh"},
}

// devName is ip's ll_index_to_name: the link's name, or "if%u" when the
// index names no link in the namespace.
func devName(index int, links LinkNamer) string {
	if links != nil {
		if name, ok := links.LinkName(index); ok {
			return name
		}
	}
	return fmt.Sprintf("if%d", uint32(int32(index)))
}

// writeEndpointText appends one `ip mptcp endpoint show` line.
func writeEndpointText(b *bytes.Buffer, e mptcp.Endpoint, links LinkNamer) {
	// ip prints the address only when the kernel sent one.
	if e.Addr.IsValid() {
		b.WriteString(formatAddr(e.Addr))
		b.WriteByte(' ')
	}
	if e.Port != 0 {
		fmt.Fprintf(b, "port %d ", e.Port)
	}
	fmt.Fprintf(b, "id %d ", e.ID)
	flags := e.Flags
	for _, pf := range printFlags {
		if flags&pf.flag != 0 {
			b.WriteString(pf.name)
			b.WriteByte(' ')
		}
		flags &^= pf.flag
	}
	if flags != 0 {
		fmt.Fprintf(b, "rawflags %02x ", uint32(flags))
	}
	if e.IfIndex != 0 {
		fmt.Fprintf(b, "dev %s ", devName(e.IfIndex, links))
	}
	b.WriteByte('\n')
}

// writeEndpointJSON appends one endpoint object with ip's keys and order.
func writeEndpointJSON(w *jsonWriter, e mptcp.Endpoint, links LinkNamer) {
	w.startObject()
	if e.Addr.IsValid() {
		w.stringField("address", formatAddr(e.Addr))
	}
	if e.Port != 0 {
		w.uintField("port", uint64(e.Port))
	}
	w.uintField("id", uint64(e.ID))
	flags := e.Flags
	for _, pf := range printFlags {
		if flags&pf.flag != 0 {
			w.boolField(pf.name, true)
		}
		flags &^= pf.flag
	}
	if flags != 0 {
		w.stringField("rawflags", fmt.Sprintf("%02x", uint32(flags)))
	}
	if e.IfIndex != 0 {
		w.stringField("dev", devName(e.IfIndex, links))
	}
	w.endObject()
}

// formatEndpoints renders `endpoint show` (a dump, or the one endpoint
// asked by id: ip prints both the same way, a JSON array in either case).
func formatEndpoints(b *bytes.Buffer, eps []mptcp.Endpoint, f format, links LinkNamer) {
	if !f.JSON {
		for _, e := range eps {
			writeEndpointText(b, e, links)
		}
		return
	}
	w := newJSONWriter(b, f.Pretty)
	w.startArray()
	for _, e := range eps {
		writeEndpointJSON(w, e, links)
	}
	w.endArray()
	b.WriteByte('\n')
}

// formatLimits renders `limits show`. ip prints the values with "%d", and
// prints only the limits the kernel sent (it always sends both).
func formatLimits(b *bytes.Buffer, l mptcp.Limits, f format) {
	if !f.JSON {
		if l.AddAddrAccepted != nil {
			fmt.Fprintf(b, "add_addr_accepted %d ", int32(*l.AddAddrAccepted))
		}
		if l.Subflows != nil {
			fmt.Fprintf(b, "subflows %d ", int32(*l.Subflows))
		}
		b.WriteByte('\n')
		return
	}
	w := newJSONWriter(b, f.Pretty)
	w.startObject()
	if l.AddAddrAccepted != nil {
		w.uintField("add_addr_accepted", uint64(*l.AddAddrAccepted))
	}
	if l.Subflows != nil {
		w.uintField("subflows", uint64(*l.Subflows))
	}
	w.endObject()
	b.WriteByte('\n')
}

// textEventNames are the event names of ip 6.1's event_to_str. It has no
// names for the listener events (15, 16), which it prints as UNKNOWN.
var textEventNames = map[mptcp.EventType]string{
	mptcp.EventCreated:        "CREATED",
	mptcp.EventEstablished:    "ESTABLISHED",
	mptcp.EventClosed:         "CLOSED",
	mptcp.EventAnnounced:      "ANNOUNCED",
	mptcp.EventRemoved:        "REMOVED",
	mptcp.EventSubEstablished: "SF_ESTABLISHED",
	mptcp.EventSubClosed:      "SF_CLOSED",
	mptcp.EventSubPriority:    "SF_PRIO",
}

// jsonEventName is the event name in JSON output: later iproute2's names,
// which add the listener events.
func jsonEventName(t mptcp.EventType) (string, bool) {
	switch t {
	case mptcp.EventListenerCreated:
		return "LISTENER_CREATED", true
	case mptcp.EventListenerClosed:
		return "LISTENER_CLOSED", true
	}
	name, ok := textEventNames[t]
	return name, ok
}

// eventAddr reports the address to print for attribute a, if it was sent
// and decoded.
func eventAddr(ev *mptcp.Event, a mptcp.EventAttr) (string, bool) {
	if !ev.Has(a) {
		return "", false
	}
	addr := ev.Saddr
	if a == mptcp.AttrDaddr4 || a == mptcp.AttrDaddr6 {
		addr = ev.Daddr
	}
	if !addr.IsValid() {
		return "", false
	}
	return formatAddr(addr), true
}

// eventAddrAttrs are the address attributes in the order ip prints them.
var eventAddrAttrs = []struct {
	attr mptcp.EventAttr
	key  string
}{
	{mptcp.AttrSaddr4, "saddr4"},
	{mptcp.AttrDaddr4, "daddr4"},
	{mptcp.AttrSaddr6, "saddr6"},
	{mptcp.AttrDaddr6, "daddr6"},
}

func boolInt(v bool) int {
	if v {
		return 1
	}
	return 0
}

// writeEventText appends one `ip mptcp monitor` line exactly as ip 6.1
// prints it (mptcp_monitor_msg): "[%14s]" then the attributes the kernel
// sent, in ip's order. 6.1 prints FLAGS as raw hex and ignores
// SERVER_SIDE; it prints the token unconditionally, here only when sent.
func writeEventText(b *bytes.Buffer, ev *mptcp.Event) {
	name, ok := textEventNames[ev.Type]
	if !ok {
		fmt.Fprintf(b, "[UNKNOWN %d]\n", uint8(ev.Type))
		return
	}
	fmt.Fprintf(b, "[%14s]", name)
	if ev.Has(mptcp.AttrToken) {
		fmt.Fprintf(b, " token=%08x", uint32(ev.Token))
	}
	if ev.Has(mptcp.AttrRemoteID) {
		fmt.Fprintf(b, " remid=%d", ev.RemoteID)
	}
	if ev.Has(mptcp.AttrLocalID) {
		fmt.Fprintf(b, " locid=%d", ev.LocalID)
	}
	for _, aa := range eventAddrAttrs {
		if s, ok := eventAddr(ev, aa.attr); ok {
			fmt.Fprintf(b, " %s=%s", aa.key, s)
		}
	}
	if ev.Has(mptcp.AttrSport) {
		fmt.Fprintf(b, " sport=%d", ev.Sport)
	}
	if ev.Has(mptcp.AttrDport) {
		fmt.Fprintf(b, " dport=%d", ev.Dport)
	}
	if ev.Has(mptcp.AttrBackup) {
		fmt.Fprintf(b, " backup=%d", boolInt(ev.Backup))
	}
	if ev.Has(mptcp.AttrError) {
		fmt.Fprintf(b, " error=%d", ev.Error)
	}
	if ev.Has(mptcp.AttrFlags) {
		fmt.Fprintf(b, " flags=%x", ev.Flags)
	}
	if ev.Has(mptcp.AttrTimeout) {
		fmt.Fprintf(b, " timeout=%d", ev.Timeout)
	}
	if ev.Has(mptcp.AttrIfIndex) {
		fmt.Fprintf(b, " ifindex=%d", int32(ev.IfIndex))
	}
	if ev.Has(mptcp.AttrResetReason) {
		fmt.Fprintf(b, " reset_reason=%d", ev.ResetReason)
	}
	if ev.Has(mptcp.AttrResetFlags) {
		fmt.Fprintf(b, " reset_flags=0x%x", ev.ResetFlags)
	}
	b.WriteByte('\n')
}

// writeEventJSON appends one event as a JSON object on its own line. The
// keys are those of later iproute2 (event, token, remid, locid,
// saddr4/daddr4/saddr6/daddr6, sport, dport, backup, error, timeout,
// ifindex, dev, reset_reason, reset_flags, server_side, deny_join_id0,
// flags), present only when the kernel sent the attribute. The token is a
// hex string as in text; server_side is true when either the
// MPTCP_PM_EV_FLAG_SERVER_SIDE flag or the older SERVER_SIDE attribute says
// so; "flags" holds flag bits that have no name. Unknown event types are
// {"event":"UNKNOWN","type":N}.
func writeEventJSON(b *bytes.Buffer, ev *mptcp.Event, pretty bool, links LinkNamer) {
	w := newJSONWriter(b, pretty)
	w.startObject()
	name, ok := jsonEventName(ev.Type)
	if !ok {
		w.stringField("event", "UNKNOWN")
		w.uintField("type", uint64(ev.Type))
		w.endObject()
		b.WriteByte('\n')
		return
	}
	w.stringField("event", name)
	if ev.Has(mptcp.AttrToken) {
		w.stringField("token", fmt.Sprintf("%08x", uint32(ev.Token)))
	}
	if ev.Has(mptcp.AttrRemoteID) {
		w.uintField("remid", uint64(ev.RemoteID))
	}
	if ev.Has(mptcp.AttrLocalID) {
		w.uintField("locid", uint64(ev.LocalID))
	}
	for _, aa := range eventAddrAttrs {
		if s, ok := eventAddr(ev, aa.attr); ok {
			w.stringField(aa.key, s)
		}
	}
	if ev.Has(mptcp.AttrSport) {
		w.uintField("sport", uint64(ev.Sport))
	}
	if ev.Has(mptcp.AttrDport) {
		w.uintField("dport", uint64(ev.Dport))
	}
	if ev.Has(mptcp.AttrBackup) {
		w.uintField("backup", uint64(boolInt(ev.Backup)))
	}
	if ev.Has(mptcp.AttrError) {
		w.uintField("error", uint64(ev.Error))
	}
	if ev.Has(mptcp.AttrTimeout) {
		w.uintField("timeout", uint64(ev.Timeout))
	}
	if ev.Has(mptcp.AttrIfIndex) {
		w.intField("ifindex", int64(int32(ev.IfIndex)))
		if ev.IfIndex != 0 {
			w.stringField("dev", devName(ev.IfIndex, links))
		}
	}
	if ev.Has(mptcp.AttrResetReason) {
		w.uintField("reset_reason", uint64(ev.ResetReason))
	}
	if ev.Has(mptcp.AttrResetFlags) {
		w.uintField("reset_flags", uint64(ev.ResetFlags))
	}
	flags := ev.Flags
	if !ev.Has(mptcp.AttrFlags) {
		flags = 0
	}
	if flags&mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE != 0 || (ev.Has(mptcp.AttrServerSide) && ev.ServerSide) {
		w.boolField("server_side", true)
	}
	flags &^= mptcp.MPTCP_PM_EV_FLAG_SERVER_SIDE
	if flags&mptcp.MPTCP_PM_EV_FLAG_DENY_JOIN_ID0 != 0 {
		w.boolField("deny_join_id0", true)
	}
	flags &^= mptcp.MPTCP_PM_EV_FLAG_DENY_JOIN_ID0
	if flags != 0 {
		w.uintField("flags", uint64(flags))
	}
	w.endObject()
	b.WriteByte('\n')
}

// formatEvent renders one event in the selected form.
func formatEvent(b *bytes.Buffer, ev *mptcp.Event, f format, links LinkNamer) {
	if f.JSON {
		writeEventJSON(b, ev, f.Pretty, links)
		return
	}
	writeEventText(b, ev)
}
