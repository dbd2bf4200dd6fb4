package policy

import (
	"net/netip"
	"strconv"
	"strings"
)

// Format writes the policy in the file's syntax, every global setting
// included, so that it shows the effective policy and parses back
// (with any base settings) to an equal one.
func (p *Policy) Format() string {
	var b strings.Builder
	b.WriteString("# policy: " + p.Source + "\n")
	for _, g := range globalStmts {
		b.WriteString(g.name + " " + g.format(&p.Settings) + "\n")
	}
	for _, c := range p.Classify {
		b.WriteString("classify " + c.Pattern + " " + c.Kind.String() + "\n")
	}
	for i := range p.Rules {
		b.WriteString("\n")
		p.Rules[i].format(&b)
	}
	return b.String()
}

// format writes a match line and its indented statements.
func (r *Rule) format(b *strings.Builder) {
	b.WriteString("match")
	criterion := func(key string, items []string) {
		if len(items) > 0 {
			b.WriteString(" " + key + "=" + strings.Join(items, ","))
		}
	}
	criterion("name", r.Names)
	criterion("kind", mapStrings(r.Kinds, Kind.String))
	criterion("family", mapStrings(r.Families, func(f int) string {
		if f == 4 {
			return "inet"
		}
		return "inet6"
	}))
	criterion("address", mapStrings(r.Prefixes, netip.Prefix.String))
	if r.DefaultRoute != nil {
		criterion("default-route", []string{formatBool(*r.DefaultRoute)})
	}
	b.WriteString("\n")
	stmt := func(words ...string) { b.WriteString("    " + strings.Join(words, " ") + "\n") }
	if r.Ignore {
		stmt("ignore")
		return
	}
	stmt("flags", r.Flags.String())
	if r.Priority != 0 {
		stmt("priority", strconv.Itoa(r.Priority))
	}
	if r.Port != 0 {
		stmt("port", strconv.Itoa(int(r.Port)))
	}
	if r.SourceRouting {
		stmt("source-routing", "yes")
	}
	if r.Adopt {
		stmt("adopt", "yes")
	}
}

func mapStrings[T any](xs []T, f func(T) string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = f(x)
	}
	return out
}
