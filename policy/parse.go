package policy

import (
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
)

// Load reads and parses the policy file at path (see Parse). It refuses a
// world-writable file.
func Load(path string, base Settings) (*Policy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data, base)
}

// Parse reads a policy file's text; name is used in positions. Settings
// start from base (what mptcpd.conf implies) and the file's global
// statements override them. The grammar is in README.md. All errors are
// returned together (errors.Join of *Error, each with file:line and,
// where one helps, a hint).
func Parse(name string, data []byte, base Settings) (*Policy, error) {
	ps := &parser{
		p:       &Policy{Source: name, Settings: base},
		globals: map[string]int{},
	}
	for i, line := range strings.Split(string(data), "\n") {
		words := fields(line)
		if len(words) == 0 {
			continue
		}
		pos := Position{File: name, Line: i + 1}
		if e := ps.statement(pos, words[0], words[1:]); e != nil && !ps.errs.add(pos, e) {
			break
		}
	}
	ps.endRule()
	if len(ps.errs.errs) == 0 {
		// A match line with errors reads as a catch-all; do not pile on.
		ps.checkReachable()
	}
	if err := ps.errs.err(); err != nil {
		return nil, err
	}
	return ps.p, nil
}

// fields splits a line into words, dropping a comment: a word starting
// with # and everything after it.
func fields(line string) []string {
	words := strings.Fields(line)
	if i := slices.IndexFunc(words, func(w string) bool { return w[0] == '#' }); i >= 0 {
		words = words[:i]
	}
	return words
}

type parser struct {
	p       *Policy
	errs    errorList
	globals map[string]int // global statement or "classify GLOB" -> line
	rule    *openRule      // the match block being read
}

// openRule is a rule whose statements are still being read.
type openRule struct {
	Rule
	seen map[string]int // statement -> line
}

func (ps *parser) statement(pos Position, kw string, args []string) *Error {
	if kw == "match" {
		ps.endRule()
		ps.rule = &openRule{Rule: Rule{Pos: pos}, seen: map[string]int{}}
		return parseCriteria(&ps.rule.Rule, args)
	}
	if g := findGlobal(kw); g != nil || kw == "classify" {
		if ps.rule != nil {
			return errorf("%s is a global statement, but this is inside the match block of line %d", kw, ps.rule.Pos.Line).
				withHint("move it above the first match")
		}
		if kw == "classify" {
			return ps.classify(pos, args)
		}
		if first, dup := ps.globals[kw]; dup {
			return givenAgain(kw, first)
		}
		ps.globals[kw] = pos.Line
		if len(args) != 1 {
			return explain(kw, g.syntax, errorf("takes one value, not %d", len(args)))
		}
		return explain(kw, g.syntax, g.parse(&ps.p.Settings, args[0]))
	}
	if r := findRuleStmt(kw); r != nil {
		if ps.rule == nil {
			return errorf("%s outside a match block", kw).withHint("start the rule with a match line above it")
		}
		if first, dup := ps.rule.seen[kw]; dup {
			return givenAgain(kw, first)
		}
		ps.rule.seen[kw] = pos.Line
		return explain(kw, r.syntax, r.parse(&ps.rule.Rule, args))
	}
	return unknownWord("statement", kw, keywords())
}

// explain prefixes a statement's error with its keyword and, lacking a
// better hint, shows its syntax.
func explain(kw, syntax string, e *Error) *Error {
	if e == nil {
		return nil
	}
	e.Msg = kw + ": " + e.Msg
	if e.Hint == "" {
		e.Hint = "write: " + syntax
	}
	return e
}

func givenAgain(what string, first int) *Error {
	return errorf("%s given again (first at line %d)", what, first).withHint("keep one of the two lines")
}

func (ps *parser) classify(pos Position, args []string) *Error {
	const syntax = "classify GLOB ethernet|wifi|wwan|virtual|loopback|other"
	if len(args) != 2 {
		return errorf("classify takes a glob and a kind").withHint("write: %s", syntax)
	}
	if e := checkGlob(args[0]); e != nil {
		return e
	}
	k, e := parseKind(args[1])
	if e != nil {
		return e
	}
	key := "classify " + args[0]
	if first, dup := ps.globals[key]; dup {
		return givenAgain(key, first)
	}
	ps.globals[key] = pos.Line
	ps.p.Classify = append(ps.p.Classify, ClassifyRule{Pos: pos, Pattern: args[0], Kind: k})
	return nil
}

// endRule checks the open rule as a whole and appends it.
func (ps *parser) endRule() {
	r := ps.rule
	if r == nil {
		return
	}
	ps.rule = nil
	at := func(stmt string) Position { return Position{File: r.Pos.File, Line: r.seen[stmt]} }
	var e *Error
	var pos Position
	switch _, hasFlags := r.seen["flags"]; {
	case r.Ignore && hasFlags:
		pos, e = at(later(r.seen, "flags", "ignore")), errorf("a rule has flags or ignore, not both")
	case !r.Ignore && !hasFlags:
		pos, e = r.Pos, errorf("this rule has neither flags nor ignore").withHint("add a line such as: flags subflow")
	case r.Ignore:
		for _, s := range []string{"priority", "port", "source-routing", "adopt"} {
			if _, ok := r.seen[s]; ok {
				pos, e = at(s), errorf("%s does nothing in a rule that ignores addresses", s).withHint("remove it, or replace ignore with flags")
				break
			}
		}
	case r.Port != 0 && r.Flags&mptcp.FlagSignal == 0:
		pos, e = at("port"), errorf("port needs the signal flag").withHint("the port is announced to the peer (ADD_ADDR); add signal to flags")
	case r.Port != 0 && r.Flags&mptcp.FlagSubflow != 0:
		pos, e = at("port"), errorf("port cannot be used with the subflow flag").withHint("the kernel refuses it; make a signal-only rule for the port")
	}
	if e != nil {
		ps.errs.add(pos, e)
	}
	ps.p.Rules = append(ps.p.Rules, r.Rule)
}

// later returns whichever of two statements came second.
func later(seen map[string]int, a, b string) string {
	if seen[a] > seen[b] {
		return a
	}
	return b
}

// checkReachable reports the first rule that a catch-all rule above it
// hides: hand-edited files grow such mistakes.
func (ps *parser) checkReachable() {
	for i, r := range ps.p.Rules {
		if r.matchesAll() && i+1 < len(ps.p.Rules) {
			ps.errs.add(ps.p.Rules[i+1].Pos, errorf("this rule never matches: the match at line %d matches every address", r.Pos.Line).
				withHint("move the catch-all rule to the end"))
			return
		}
	}
}

// globalStmt is a statement before the first match (classify, which may
// repeat, apart): its syntax for hints, its parser and its formatter.
type globalStmt struct {
	name, syntax string
	parse        func(s *Settings, v string) *Error
	format       func(s *Settings) string
}

var globalStmts = []globalStmt{
	boolStmt("check-route", func(s *Settings) *bool { return &s.CheckRoute }),
	boolStmt("skip-loopback", func(s *Settings) *bool { return &s.SkipLoopback }),
	boolStmt("skip-link-local", func(s *Settings) *bool { return &s.SkipLinkLocal }),
	boolStmt("ipv6-temporary", func(s *Settings) *bool { return &s.UseTemporary }),
	boolStmt("deprecated", func(s *Settings) *bool { return &s.UseDeprecated }),
	limitStmt("subflows", func(s *Settings) *Limit { return &s.Subflows }),
	limitStmt("add-addr-accepted", func(s *Settings) *Limit { return &s.AddAddrAccepted }),
	intStmt("route-table-base", 256, 1<<31-1, "tables 0 and 253..255 are the kernel's; the base must be at least 256",
		func(s *Settings) *int { return &s.RouteTableBase }),
	intStmt("rule-priority", 1, 32765, "the rules must come before the main table's rule at 32766",
		func(s *Settings) *int { return &s.RulePriority }),
}

func findGlobal(name string) *globalStmt {
	if i := slices.IndexFunc(globalStmts, func(g globalStmt) bool { return g.name == name }); i >= 0 {
		return &globalStmts[i]
	}
	return nil
}

func boolStmt(name string, field func(*Settings) *bool) globalStmt {
	return globalStmt{name, name + " yes|no",
		func(s *Settings, v string) (e *Error) {
			*field(s), e = parseBool(v)
			return e
		},
		func(s *Settings) string { return formatBool(*field(s)) }}
}

func limitStmt(name string, field func(*Settings) *Limit) globalStmt {
	return globalStmt{name, name + " auto|keep|0..8",
		func(s *Settings, v string) (e *Error) {
			*field(s), e = parseLimit(v)
			return e
		},
		func(s *Settings) string { return field(s).String() }}
}

func intStmt(name string, lo, hi int, hint string, field func(*Settings) *int) globalStmt {
	return globalStmt{name, fmt.Sprintf("%s N (%d..%d)", name, lo, hi),
		func(s *Settings, v string) *Error {
			n, e := parseInt(v, lo, hi)
			if e != nil {
				return e.withHint("%s", hint)
			}
			*field(s) = n
			return nil
		},
		func(s *Settings) string { return strconv.Itoa(*field(s)) }}
}

// maxLimit is the kernel's bound on both limits.
const maxLimit = mptcp.MPTCP_PM_LIMITS_MAX

func parseLimit(v string) (Limit, *Error) {
	switch v {
	case "auto":
		return Limit{Mode: LimitAuto}, nil
	case "keep":
		return Limit{Mode: LimitKeep}, nil
	}
	n, e := parseInt(v, 0, maxLimit)
	if e != nil {
		return Limit{}, errorf("%q is not auto, keep or a number from 0 to %d", v, maxLimit).
			withHint("the kernel allows at most %d", maxLimit)
	}
	return Limit{Mode: LimitFixed, Value: uint32(n)}, nil
}

// ruleStmt is a statement inside a match block.
type ruleStmt struct {
	name, syntax string
	parse        func(r *Rule, args []string) *Error
}

func findRuleStmt(name string) *ruleStmt {
	if i := slices.IndexFunc(ruleStmts, func(r ruleStmt) bool { return r.name == name }); i >= 0 {
		return &ruleStmts[i]
	}
	return nil
}

// ruleStmts are the statements inside a match block.
var ruleStmts = []ruleStmt{
	{"flags", "flags subflow|signal|backup|fullmesh ...", func(r *Rule, args []string) (e *Error) {
		var words []string
		for _, a := range args {
			words = append(words, splitList(a)...)
		}
		if len(words) == 0 {
			return errorf("no flags given")
		}
		r.Flags, e = parseFlagWords(words)
		return e
	}},
	{"ignore", "ignore", func(r *Rule, args []string) *Error {
		if len(args) != 0 {
			return errorf("takes no value")
		}
		r.Ignore = true
		return nil
	}},
	{"priority", "priority N (-1000..1000)", oneValue(func(r *Rule, v string) (e *Error) {
		r.Priority, e = parseInt(v, -1000, 1000)
		return e
	})},
	{"port", "port N (1..65535)", oneValue(func(r *Rule, v string) *Error {
		n, e := parseInt(v, 1, 65535)
		r.Port = uint16(n)
		return e
	})},
	{"source-routing", "source-routing yes|no", oneValue(func(r *Rule, v string) (e *Error) {
		r.SourceRouting, e = parseBool(v)
		return e
	})},
	{"adopt", "adopt yes|no", oneValue(func(r *Rule, v string) (e *Error) {
		r.Adopt, e = parseBool(v)
		return e
	})},
}

// oneValue makes the parser of a statement that takes one value.
func oneValue(parse func(r *Rule, v string) *Error) func(*Rule, []string) *Error {
	return func(r *Rule, args []string) *Error {
		if len(args) != 1 {
			return errorf("takes one value, not %d", len(args))
		}
		return parse(r, args[0])
	}
}

// keywords lists every statement, for "did you mean".
func keywords() []string {
	kws := []string{"match", "classify"}
	for _, g := range globalStmts {
		kws = append(kws, g.name)
	}
	for _, r := range ruleStmts {
		kws = append(kws, r.name)
	}
	return kws
}

var criteria = []string{"name", "kind", "family", "address", "default-route"}

// parseCriteria reads the KEY=VALUE[,VALUE...] words of a match line.
func parseCriteria(r *Rule, args []string) *Error {
	seen := map[string]bool{}
	for _, arg := range args {
		key, val, ok := strings.Cut(arg, "=")
		if !ok {
			return bareCriterion(arg)
		}
		if !slices.Contains(criteria, key) {
			return unknownWord("match criterion", key, criteria)
		}
		if seen[key] {
			return errorf("%s= given twice in one match", key).withHint("list the values once: %s=A,B", key)
		}
		seen[key] = true
		items := strings.Split(val, ",")
		if slices.Contains(items, "") {
			return errorf("%s= has an empty item in %q", key, val).
				withHint("write %s=A,B with no blanks around the commas", key)
		}
		if e := addCriterion(r, key, items); e != nil {
			return e
		}
	}
	return nil
}

func addCriterion(r *Rule, key string, items []string) *Error {
	if key == "default-route" {
		if len(items) != 1 {
			return errorf("default-route= takes yes or no")
		}
		b, e := parseBool(items[0])
		if e != nil {
			return e
		}
		r.DefaultRoute = &b
		return nil
	}
	for _, item := range items {
		var e *Error
		var dup bool
		switch key {
		case "name":
			if e = checkGlob(item); e == nil {
				dup = slices.Contains(r.Names, item)
				r.Names = append(r.Names, item)
			}
		case "kind":
			var k Kind
			if k, e = parseKind(item); e == nil {
				dup = slices.Contains(r.Kinds, k)
				r.Kinds = append(r.Kinds, k)
			}
		case "family":
			var f int
			if f, e = parseFamily(item); e == nil {
				dup = slices.Contains(r.Families, f)
				r.Families = append(r.Families, f)
			}
		case "address":
			var p netip.Prefix
			if p, e = parsePrefix(item); e == nil {
				dup = slices.Contains(r.Prefixes, p)
				r.Prefixes = append(r.Prefixes, p)
			}
		}
		if e != nil {
			return e
		}
		if dup {
			return errorf("%s= lists %s twice", key, item)
		}
	}
	return nil
}

// bareCriterion explains a match word without "=", guessing what it is.
func bareCriterion(w string) *Error {
	e := errorf("%q is not a KEY=VALUE criterion", w)
	switch _, kerr := parseKind(w); {
	case kerr == nil:
		return e.withHint("write kind=%s", w)
	case isPrefix(w):
		return e.withHint("write address=%s", w)
	}
	return e.withHint("write name=%s to match an interface name", w)
}

func isPrefix(s string) bool {
	_, e := parsePrefix(s)
	return e == nil
}

// checkGlob checks a path.Match pattern against interface names.
func checkGlob(g string) *Error {
	if _, err := path.Match(g, ""); err != nil {
		return errorf("bad glob %q", g).withHint("globs use * ? [a-z] and \\ as in the shell")
	}
	if strings.Contains(g, "/") {
		return errorf("glob %q contains /, which no interface name does", g)
	}
	return nil
}

// kindWords are the kind words a file may use (synonyms last).
var kindWords = append(kindNames[:len(kindNames):len(kindNames)], "cellular", "wlan")

func parseKind(w string) (Kind, *Error) {
	k, err := ParseKind(w)
	if err != nil {
		return 0, unknownWord("interface kind", w, kindWords)
	}
	return k, nil
}

var familyWords = []string{"inet", "inet6", "4", "6", "ipv4", "ipv6"}

func parseFamily(w string) (int, *Error) {
	switch w {
	case "inet", "4", "ipv4":
		return 4, nil
	case "inet6", "6", "ipv6":
		return 6, nil
	}
	return 0, unknownWord("family", w, familyWords)
}

// parsePrefix reads an address prefix or a single address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, *Error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, errorf("%q is not an address or prefix", s).withHint("write 192.0.2.0/24 or 2001:db8::/32")
		}
		if a.Zone() != "" {
			return netip.Prefix{}, errorf("address %q has a zone", s).withHint("match the interface with name= instead")
		}
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, errorf("%q is not an address prefix", s).withHint("write 192.0.2.0/24 or 2001:db8::/32")
	}
	if p != p.Masked() {
		return netip.Prefix{}, errorf("prefix %s has bits set past /%d", s, p.Bits()).withHint("did you mean %s?", p.Masked())
	}
	return p, nil
}
