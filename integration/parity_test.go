package integration

// Parity tests of mptcpctl against iproute2 6.1's `ip mptcp`, the oracle:
// the same arguments run through both tools, each in its own freshly made
// namespace with the same links and addresses, and the exit statuses, the
// output and the resulting endpoint tables and limits must match.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mptcpd-go/mptcpd/internal/nstest"
)

// Environment knobs of TestParityRandomOps.
const (
	envParitySeed  = "MPTCPD_PARITY_SEED"  // replay a run: the seed it logged
	envParitySteps = "MPTCPD_PARITY_STEPS" // more operations than the default
)

const parityDefaultSteps = 300

// Addresses configured on the veth pair of each parity namespace; port
// (signal) endpoints need a local address to listen on.
var parityLinkAddrs = []struct{ dev, prefix string }{
	{"v0", "10.0.1.1/24"},
	{"v0", "2001:db8:1::1/64"},
	{"v1", "10.0.2.1/24"},
	{"v1", "2001:db8:2::1/64"},
}

// The random test's address pool: the local addresses above and some that
// are not local, few enough that duplicates and the 8-endpoint limit come
// up often.
var (
	parityLocalAddrs = []string{"10.0.1.1", "10.0.2.1", "2001:db8:1::1", "2001:db8:2::1"}
	parityOtherAddrs = []string{"10.0.9.1", "10.0.9.2", "192.0.2.7", "2001:db8:9::1", "2001:db8:9::2", "::ffff:10.0.9.3"}
)

// parityPair is two namespaces prepared alike: ip works in one, mptcpctl in
// the other.
type parityPair struct {
	ip, ctl     mptcpTool
	ipNS, ctlNS *nstest.NS
}

func newParityPair(t *testing.T) *parityPair {
	t.Helper()
	ctl := requireMptcpctl(t)
	p := &parityPair{ip: ipTool, ctl: ctl, ipNS: nstest.New(t), ctlNS: nstest.New(t)}
	for _, ns := range []*nstest.NS{p.ipNS, p.ctlNS} {
		// Both ends in the same namespace: the pair only provides
		// devices and local addresses.
		nstest.Veth(t, ns, "v0", ns, "v1")
		for _, a := range parityLinkAddrs {
			// nodad: a tentative IPv6 address cannot be bound, and DAD
			// timing must not make the two namespaces differ.
			ns.MustRun("ip", "addr", "add", a.prefix, "dev", a.dev, "nodad")
		}
	}
	return p
}

// parityOp is one invocation: ip-mptcp arguments, with or without -j.
type parityOp struct {
	json bool
	args []string
}

func (op parityOp) String() string {
	s := strings.Join(op.args, " ")
	if op.json {
		s = "-j " + s
	}
	return s
}

// compare runs op on both sides and returns the differences found.
func (p *parityPair) compare(t *testing.T, op parityOp) (ipRes, ctlRes result, diffs []string) {
	t.Helper()
	ipRes = p.ip.run(t, p.ipNS.Name, op.json, op.args...)
	ctlRes = p.ctl.run(t, p.ctlNS.Name, op.json, op.args...)
	return ipRes, ctlRes, compareResults(op, ipRes, ctlRes, p.ctl)
}

// compareResults lists how ctl's result (of ctlTool) differs from ip's for op.
func compareResults(op parityOp, ip, ctl result, ctlTool mptcpTool) []string {
	var diffs []string
	if ip.code != ctl.code {
		diffs = append(diffs, fmt.Sprintf("exit status: ip %d, mptcpctl %d", ip.code, ctl.code))
	}
	if d := compareStdout(op.json, ip.stdout, ctl.stdout, ctlTool.textLimits); d != "" {
		diffs = append(diffs, "stdout: "+d)
	}
	if d := compareStderr(ip, ctl); d != "" {
		diffs = append(diffs, "stderr: "+d)
	}
	return diffs
}

// compareStdout compares text byte for byte and JSON by value. iproute2 6.1
// prints limits as text even with -j; mptcpctl prints them as JSON, so they
// are compared by value too (ctlTextLimits: ctl is iproute2 as well).
func compareStdout(isJSON bool, ip, ctl string, ctlTextLimits bool) string {
	if !isJSON || ip == "" {
		if d := cmp.Diff(ip, ctl); d != "" {
			return fmt.Sprintf("unexpected output (-ip +mptcpctl):\n%s", d)
		}
		return ""
	}
	want, err := decodeJSONOutput(ip, true)
	if err != nil {
		return fmt.Sprintf("ip -j: %v", err)
	}
	got, err := decodeJSONOutput(ctl, ctlTextLimits)
	if err != nil {
		return fmt.Sprintf("mptcpctl -j: %v", err)
	}
	if d := cmp.Diff(want, got); d != "" {
		return fmt.Sprintf("unexpected JSON (-ip +mptcpctl):\n%s", d)
	}
	return ""
}

// decodeJSONOutput decodes the output of a -j command: one JSON value and a
// newline, or with textLimits also iproute2 6.1's limits text.
func decodeJSONOutput(s string, textLimits bool) (any, error) {
	var v any
	err := json.Unmarshal([]byte(s), &v)
	if err != nil && textLimits {
		if lim, ok := parseLimitsText(s); ok {
			return lim, nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("invalid JSON (%v): %q", err, s)
	}
	if !strings.HasSuffix(s, "\n") {
		return nil, fmt.Errorf("output does not end in a newline: %q", s)
	}
	return v, nil
}

// parseLimitsText reads iproute2's "add_addr_accepted N subflows N \n" into
// the JSON form newer iproute2 (and mptcpctl) print.
func parseLimitsText(s string) (map[string]any, bool) {
	f := strings.Fields(s)
	if len(f) == 0 || len(f)%2 != 0 || !strings.HasSuffix(s, "\n") {
		return nil, false
	}
	m := map[string]any{}
	for i := 0; i < len(f); i += 2 {
		if f[i] != "add_addr_accepted" && f[i] != "subflows" {
			return nil, false
		}
		n, err := strconv.ParseUint(f[i+1], 10, 32)
		if err != nil {
			return nil, false
		}
		m[f[i]] = float64(n) // as encoding/json decodes numbers
	}
	return m, true
}

// compareStderr checks the error reporting: mptcpctl stays quiet when ip
// is, and when both fail its message names the same reason as ip's. The
// wording may differ.
func compareStderr(ip, ctl result) string {
	switch {
	case ip.code == 0 && ip.stderr == "":
		if ctl.stderr != "" {
			return fmt.Sprintf("ip printed nothing, mptcpctl printed %q", ctl.stderr)
		}
	case ip.code != 0 && ctl.code != 0:
		if strings.TrimSpace(ctl.stderr) == "" {
			return fmt.Sprintf("mptcpctl failed silently; ip said %q", ip.stderr)
		}
		if r := errorReason(ip.stderr); r != "" && !strings.Contains(strings.ToLower(ctl.stderr), strings.ToLower(r)) {
			return fmt.Sprintf("mptcpctl's message does not mention %q:\n  ip:       %q\n  mptcpctl: %q", r, ip.stderr, ctl.stderr)
		}
	}
	return ""
}

// iproute2's error messages, most specific first, and the part of each that
// mptcpctl's message must contain: the argument ip rejected, the kernel's
// extended ack or the errno text.
var errorReasons = []*regexp.Regexp{
	regexp.MustCompile(`^Error: argument "(.*)" is (?:wrong|required)`),
	regexp.MustCompile(`^Error: any valid address is expected rather than "(.*)"\.`),
	regexp.MustCompile(`^Command "(.*)" is unknown`),
	regexp.MustCompile(`^RTNETLINK answers: (.*)$`),
	regexp.MustCompile(`^Error: (.*?)\.?$`), // the kernel's extended ack
}

// errorReason returns what mptcpctl's error message must contain for ip's
// message s, or "" when any message will do (usage, "not complete").
func errorReason(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	for _, re := range errorReasons {
		if m := re.FindStringSubmatch(line); m != nil {
			return m[1]
		}
	}
	return ""
}

// stateOps read back everything the operations can change.
var stateOps = []parityOp{
	{args: []string{"endpoint", "show"}},
	{json: true, args: []string{"endpoint", "show"}},
	{args: []string{"limits", "show"}},
	{json: true, args: []string{"limits", "show"}},
}

// compareState compares the endpoint tables and limits of both namespaces
// and returns ip's endpoint table for the operation generator.
func (p *parityPair) compareState(t *testing.T) (eps []parityEndpoint, diffs []string) {
	t.Helper()
	for _, op := range stateOps {
		ipRes, _, d := p.compare(t, op)
		for _, s := range d {
			diffs = append(diffs, fmt.Sprintf("state %q: %s", op, s))
		}
		if op.json && op.args[0] == "endpoint" {
			if err := json.Unmarshal([]byte(ipRes.stdout), &eps); err != nil {
				t.Fatalf("ip -j mptcp endpoint show: %v: %q", err, ipRes.stdout)
			}
		}
	}
	return eps, diffs
}

// parityEndpoint is what the generator needs of one `ip -j` endpoint.
type parityEndpoint struct {
	Address string `json:"address"`
	ID      int    `json:"id"`
	Port    int    `json:"port"`
}

// parityStep is one line of the history printed on failure.
type parityStep struct {
	op      parityOp
	ip, ctl result
}

func (s parityStep) String() string {
	line := fmt.Sprintf("ip=%d mptcpctl=%d  %s", s.ip.code, s.ctl.code, s.op)
	if s.ip.stderr != "" || s.ctl.stderr != "" {
		line += fmt.Sprintf("\n        ip: %q\n        mptcpctl: %q", s.ip.stderr, s.ctl.stderr)
	}
	return line
}

func TestParityRandomOps(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(envParitySeed); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 0, 64); err != nil {
			t.Fatalf("%s=%q: %v", envParitySeed, s, err)
		}
	}
	steps := parityDefaultSteps
	if s := os.Getenv(envParitySteps); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", envParitySteps, s)
		}
		steps = n
	}
	p := newParityPair(t)
	t.Logf("seed %d (replay with %s=%d), %d steps, %s vs %s", seed, envParitySeed, seed, steps, p.ip.name, p.ctl.name)

	g := &parityGen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	var history []parityStep
	fail := func(step int, diffs []string) {
		t.Helper()
		var b strings.Builder
		for i, h := range history {
			fmt.Fprintf(&b, "  %3d: %s\n", i, h)
		}
		t.Fatalf("seed %d (%s=%d), step %d %q:\n  %s\nhistory:\n%s",
			seed, envParitySeed, seed, step, history[len(history)-1].op, strings.Join(diffs, "\n  "), b.String())
	}

	eps, diffs := p.compareState(t)
	if len(diffs) > 0 {
		history = append(history, parityStep{op: parityOp{args: []string{"(initial state)"}}})
		fail(0, diffs)
	}
	codes := map[int]int{}
	for step := range steps {
		g.eps = eps
		op := g.next()
		ipRes, ctlRes, diffs := p.compare(t, op)
		history = append(history, parityStep{op: op, ip: ipRes, ctl: ctlRes})
		codes[ipRes.code]++
		if len(diffs) > 0 {
			fail(step, diffs)
		}
		eps, diffs = p.compareState(t)
		if len(diffs) > 0 {
			fail(step, diffs)
		}
	}
	// A run where (nearly) everything failed, or nothing did, would not
	// test much: say what the mix was.
	t.Logf("exit statuses of the %d operations: %v", steps, codes)
}

// parityGen makes random ip-mptcp argument lists: mostly valid, with every
// kind of invalid input mixed in, and ids and addresses often taken from
// the current table so that deletes and changes hit.
type parityGen struct {
	r   *rand.Rand
	eps []parityEndpoint
}

func (g *parityGen) chance(p float64) bool { return g.r.Float64() < p }

func pick[T any](g *parityGen, s []T) T { return s[g.r.IntN(len(s))] }

// word returns keyword, or now and then one of the abbreviations iproute2's
// matches() accepts for it.
func (g *parityGen) word(keyword string, abbrevs ...string) string {
	if len(abbrevs) > 0 && g.chance(0.1) {
		return pick(g, abbrevs)
	}
	return keyword
}

func (g *parityGen) addr() string {
	if g.chance(0.5) {
		return pick(g, parityLocalAddrs)
	}
	return pick(g, parityOtherAddrs)
}

// existing returns an endpoint of the current table, if any.
func (g *parityGen) existing() (parityEndpoint, bool) {
	if len(g.eps) == 0 {
		return parityEndpoint{}, false
	}
	return pick(g, g.eps), true
}

func (g *parityGen) id() string {
	if g.chance(0.75) {
		return strconv.Itoa(1 + g.r.IntN(12))
	}
	// 0x10 and 010 are valid for strtoul(base 0); 0b1 is valid only for Go.
	return pick(g, []string{"0", "255", "256", "abc", "-1", "0x10", "010", "0b1"})
}

func (g *parityGen) existingID() string {
	if ep, ok := g.existing(); ok && g.chance(0.8) {
		return strconv.Itoa(ep.ID)
	}
	return g.id()
}

func (g *parityGen) port() string {
	if g.chance(0.7) {
		return strconv.Itoa(5000 + g.r.IntN(4))
	}
	return pick(g, []string{"0", "65535", "65536", "x", "-1"})
}

func (g *parityGen) next() parityOp {
	type kind struct {
		weight int
		gen    func() parityOp
	}
	kinds := []kind{
		{30, g.add},
		{15, g.del},
		{12, g.change},
		{10, g.show},
		{3, g.flush},
		{12, g.limitsSet},
		{5, g.limitsShow},
		{3, g.misc},
	}
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	n := g.r.IntN(total)
	for _, k := range kinds {
		if n < k.weight {
			op := k.gen()
			// -j changes nothing for most commands: both must ignore it.
			op.json = op.json || g.chance(0.1)
			return op
		}
		n -= k.weight
	}
	panic("unreachable")
}

func (g *parityGen) endpointCmd(sub string, abbrevs ...string) []string {
	return []string{g.word("endpoint", "e", "end"), g.word(sub, abbrevs...)}
}

func (g *parityGen) add() parityOp {
	var groups [][]string
	if g.chance(0.35) {
		groups = append(groups, []string{g.word("id", "i"), g.id()})
	}
	if g.chance(0.2) {
		dev := pick(g, []string{"v0", "v1", "lo"})
		if g.chance(0.15) {
			dev = pick(g, []string{"nope", "name-longer-than-ifnamsiz"})
		}
		groups = append(groups, []string{g.word("dev", "d", "de"), dev})
	}
	port := g.chance(0.25)
	for _, f := range []string{"signal", "subflow", "backup", "fullmesh"} {
		// A port needs signal: mostly give it one.
		if g.chance(0.3) || f == "signal" && port && g.chance(0.75) {
			groups = append(groups, []string{f})
			if g.chance(0.05) {
				groups = append(groups, []string{f})
			}
		}
	}
	if port {
		groups = append(groups, []string{g.word("port", "p", "po"), g.port()})
	}
	if g.chance(0.05) {
		groups = append(groups, []string{pick(g, []string{"nobackup", "nofullmesh"})})
	}
	if g.chance(0.03) {
		// Not flags to iproute2 6.1: it takes them for an address.
		// (mptcpctl accepts "laminar": a documented difference.)
		groups = append(groups, []string{pick(g, []string{"implicit", "bogus"})})
	}
	g.r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	if !g.chance(0.03) {
		at := 0
		if g.chance(0.2) {
			at = g.r.IntN(len(groups) + 1)
		}
		groups = slices.Insert(groups, at, []string{g.addr()})
	}
	args := g.endpointCmd("add", "a")
	for _, gr := range groups {
		args = append(args, gr...)
	}
	if g.chance(0.03) {
		args = append(args, pick(g, []string{"id", "port", "dev"})) // value missing
	}
	return parityOp{args: args}
}

func (g *parityGen) del() parityOp {
	args := g.endpointCmd("delete", "d", "del")
	idw := g.word("id", "i")
	switch n := g.r.IntN(20); {
	case n < 13:
		args = append(args, idw, g.existingID())
	case n < 15:
		args = append(args, idw, strconv.Itoa(1+g.r.IntN(20)))
	case n < 16:
		args = append(args, idw, "0", g.addr())
	case n < 17:
		args = append(args, idw, "0")
	case n < 18:
		args = append(args, idw, g.existingID(), g.addr())
	case n < 19:
		// no id at all
	default:
		args = append(args, idw, pick(g, []string{"256", "abc"}))
	}
	return parityOp{args: args}
}

func (g *parityGen) change() parityOp {
	args := g.endpointCmd("change", "c", "ch")
	switch n := g.r.IntN(20); {
	case n < 9:
		args = append(args, g.word("id", "i"), g.existingID())
	case n < 11:
		args = append(args, "id", g.id())
	case n < 17:
		if ep, ok := g.existing(); ok {
			args = append(args, ep.Address)
			if ep.Port != 0 && g.chance(0.7) {
				args = append(args, "port", strconv.Itoa(ep.Port))
			}
		} else {
			args = append(args, g.addr())
		}
	case n < 19:
		args = append(args, g.addr())
	default:
		// Both: the kernel looks up the id. (Neither is a documented
		// difference, see parityDifferences.)
		args = append(args, "id", g.existingID(), g.addr())
	}
	for _, f := range []string{"backup", "nobackup", "fullmesh", "nofullmesh"} {
		if g.chance(0.35) {
			args = append(args, f)
		}
	}
	if g.chance(0.1) {
		args = append(args, pick(g, []string{"signal", "subflow"}))
	}
	if g.chance(0.05) {
		args = append(args, "port", g.port())
	}
	return parityOp{args: args}
}

func (g *parityGen) show() parityOp {
	op := parityOp{json: g.chance(0.4)}
	switch n := g.r.IntN(10); {
	case n < 4:
		op.args = g.endpointCmd("show", "s", "sh")
	case n < 7:
		op.args = append(g.endpointCmd("show", "s"), g.word("id", "i"), g.existingID())
	case n < 8:
		op.args = []string{g.word("endpoint", "e")}
	default:
		op.args = append(g.endpointCmd("show"), pick(g, []string{"id", g.addr(), "bogus"}))
	}
	return op
}

func (g *parityGen) flush() parityOp {
	return parityOp{args: g.endpointCmd("flush", "f", "fl")}
}

func (g *parityGen) limit() string {
	switch n := g.r.IntN(10); {
	case n < 6:
		return strconv.Itoa(g.r.IntN(9))
	case n < 8:
		return strconv.Itoa(9 + g.r.IntN(4))
	default:
		return pick(g, []string{"-1", "x", "0x3", "010", "4294967296"})
	}
}

func (g *parityGen) limitsSet() parityOp {
	args := []string{g.word("limits", "l", "lim"), g.word("set", "se")}
	var groups [][]string
	if g.chance(0.6) {
		groups = append(groups, []string{g.word("subflows", "s", "subf"), g.limit()})
	}
	if g.chance(0.6) {
		groups = append(groups, []string{g.word("add_addr_accepted", "a", "add"), g.limit()})
	}
	if g.chance(0.05) {
		groups = append(groups, []string{"foo", "1"})
	}
	g.r.Shuffle(len(groups), func(i, j int) { groups[i], groups[j] = groups[j], groups[i] })
	for _, gr := range groups {
		args = append(args, gr...)
	}
	if g.chance(0.05) {
		args = append(args, "subflows") // value missing
	}
	return parityOp{args: args}
}

func (g *parityGen) limitsShow() parityOp {
	op := parityOp{json: g.chance(0.4)}
	switch n := g.r.IntN(10); {
	case n < 7:
		// "s" is an abbreviation of "set", which iproute2 tries first:
		// "limits s" sets nothing.
		op.args = []string{g.word("limits", "l"), g.word("show", "s", "sh")}
	case n < 9:
		op.args = []string{"limits"}
	default:
		op.args = []string{"limits", "show", "extra"}
	}
	return op
}

// misc are commands iproute2 rejects before talking to the kernel. Never a
// bare "monitor": it would not return.
func (g *parityGen) misc() parityOp {
	return parityOp{args: pick(g, [][]string{
		{},
		{"bogus"},
		{"endpoint", "bogus"},
		{"endpoint", "help"},
		{"endpoint", "add"},
		{"limits", "bogus"},
		{"monitor", "now"},
	})}
}

// parityErrorCase is one fixed operation of TestParityErrors: setup runs on
// both sides first (and must succeed), then op must fail alike.
type parityErrorCase struct {
	name   string
	setup  [][]string
	op     parityOp
	ipCode int // iproute2 6.1's exit status, to keep each case an error case
}

// parityFill adds n endpoints with distinct non-local addresses.
func parityFill(n int) [][]string {
	var ops [][]string
	for i := range n {
		ops = append(ops, []string{"endpoint", "add", fmt.Sprintf("10.0.9.%d", i+1), "subflow"})
	}
	return ops
}

func parityArgs(s ...string) parityOp { return parityOp{args: s} }

var parityErrorCases = []parityErrorCase{
	// Kernel refusals (exit 2, the extended ack in the message).
	{name: "duplicate address", setup: [][]string{{"endpoint", "add", "10.0.1.1", "signal"}},
		op: parityArgs("endpoint", "add", "10.0.1.1", "signal"), ipCode: 2},
	{name: "duplicate id", setup: [][]string{{"endpoint", "add", "10.0.1.1", "id", "5"}},
		op: parityArgs("endpoint", "add", "10.0.2.1", "id", "5", "subflow"), ipCode: 2},
	{name: "ninth endpoint", setup: parityFill(8),
		op: parityArgs("endpoint", "add", "10.0.1.1", "subflow"), ipCode: 2},
	{name: "ninth endpoint signal port", setup: parityFill(8),
		op: parityArgs("endpoint", "add", "10.0.1.1", "port", "5000", "signal"), ipCode: 2},
	{name: "port on a non-local address", op: parityArgs("endpoint", "add", "10.0.9.1", "port", "5000", "signal"), ipCode: 2},
	{name: "delete missing id", op: parityArgs("endpoint", "delete", "id", "7"), ipCode: 2},
	{name: "show missing id", op: parityArgs("endpoint", "show", "id", "7"), ipCode: 2},
	{name: "show missing id json", op: parityOp{json: true, args: []string{"endpoint", "show", "id", "7"}}, ipCode: 2},
	{name: "show by address", setup: [][]string{{"endpoint", "add", "10.0.1.1"}},
		op: parityArgs("endpoint", "show", "10.0.1.1"), ipCode: 2},
	{name: "change missing id", op: parityArgs("endpoint", "change", "id", "7", "backup"), ipCode: 2},
	{name: "change missing address", op: parityArgs("endpoint", "change", "10.0.9.9", "backup"), ipCode: 2},
	{name: "change fullmesh on signal", setup: [][]string{{"endpoint", "add", "10.0.1.1", "signal"}},
		op: parityArgs("endpoint", "change", "10.0.1.1", "fullmesh"), ipCode: 2},
	{name: "subflows over 8", op: parityArgs("limits", "set", "subflows", "9"), ipCode: 2},
	{name: "add_addr_accepted over 8", op: parityArgs("limits", "set", "add_addr_accepted", "9"), ipCode: 2},

	// Bad flags (exit 255 from iproute2's argument checks).
	{name: "signal and fullmesh", op: parityArgs("endpoint", "add", "10.0.1.1", "signal", "fullmesh"), ipCode: 255},
	{name: "fullmesh and signal", op: parityArgs("endpoint", "add", "10.0.1.1", "fullmesh", "subflow", "signal"), ipCode: 255},
	{name: "port without signal", op: parityArgs("endpoint", "add", "10.0.1.1", "port", "5000", "subflow"), ipCode: 255},
	{name: "change to signal", setup: [][]string{{"endpoint", "add", "10.0.1.1", "subflow"}},
		op: parityArgs("endpoint", "change", "id", "1", "signal"), ipCode: 255},
	{name: "change id with port", setup: [][]string{{"endpoint", "add", "10.0.1.1", "port", "5000", "signal"}},
		op: parityArgs("endpoint", "change", "id", "1", "port", "5000", "backup"), ipCode: 255},
	// 6.1 has no implicit or laminar flag word: it reads them as addresses.
	{name: "implicit flag", op: parityArgs("endpoint", "add", "10.0.1.1", "implicit"), ipCode: 1},
	{name: "unknown flag", op: parityArgs("endpoint", "add", "10.0.1.1", "subflow", "bogus"), ipCode: 1},

	// Bad arguments.
	{name: "id 256", op: parityArgs("endpoint", "add", "10.0.1.1", "id", "256"), ipCode: 255},
	{name: "id not a number", op: parityArgs("endpoint", "add", "10.0.1.1", "id", "abc"), ipCode: 255},
	{name: "id negative", op: parityArgs("endpoint", "add", "10.0.1.1", "id", "-1"), ipCode: 255},
	{name: "id in Go-only syntax", op: parityArgs("endpoint", "add", "10.0.1.1", "id", "0b1"), ipCode: 255},
	{name: "id with underscore", op: parityArgs("endpoint", "add", "10.0.1.1", "id", "1_0"), ipCode: 255},
	{name: "port 65536", op: parityArgs("endpoint", "add", "10.0.1.1", "port", "65536", "signal"), ipCode: 255},
	{name: "port not a number", op: parityArgs("endpoint", "add", "10.0.1.1", "port", "x", "signal"), ipCode: 255},
	{name: "missing device", op: parityArgs("endpoint", "add", "10.0.1.1", "dev", "nope"), ipCode: 255},
	{name: "device name too long", op: parityArgs("endpoint", "add", "10.0.1.1", "dev", "name-longer-than-ifnamsiz"), ipCode: 255},
	{name: "prefix instead of address", op: parityArgs("endpoint", "add", "10.0.1.0/24"), ipCode: 1},
	{name: "missing address", op: parityArgs("endpoint", "add", "subflow"), ipCode: 255},
	{name: "missing id value", op: parityArgs("endpoint", "add", "10.0.1.1", "id"), ipCode: 255},
	{name: "delete without id", op: parityArgs("endpoint", "delete"), ipCode: 255},
	{name: "delete id 0 without address", op: parityArgs("endpoint", "delete", "id", "0"), ipCode: 255},
	{name: "delete id with address", setup: [][]string{{"endpoint", "add", "10.0.1.1"}},
		op: parityArgs("endpoint", "delete", "id", "1", "10.0.1.1"), ipCode: 255},
	{name: "delete id 300", op: parityArgs("endpoint", "delete", "id", "300"), ipCode: 255},
	{name: "show id without value", op: parityArgs("endpoint", "show", "id"), ipCode: 255},
	{name: "limit negative", op: parityArgs("limits", "set", "subflows", "-1"), ipCode: 255},
	{name: "limit over u32", op: parityArgs("limits", "set", "add_addr_accepted", "4294967296"), ipCode: 255},
	{name: "unknown limit", op: parityArgs("limits", "set", "foo", "1"), ipCode: 255},
	{name: "limit without value", op: parityArgs("limits", "set", "subflows"), ipCode: 255},
	{name: "limits show with argument", op: parityArgs("limits", "show", "extra"), ipCode: 255},
	{name: "no command", op: parityArgs(), ipCode: 255},
	{name: "unknown object", op: parityArgs("bogus"), ipCode: 255},
	{name: "unknown endpoint command", op: parityArgs("endpoint", "bogus"), ipCode: 255},
	{name: "unknown limits command", op: parityArgs("limits", "bogus"), ipCode: 255},
	{name: "monitor with argument", op: parityArgs("monitor", "now"), ipCode: 255},
}

// parityDifferences are the departures from ip 6.1 that mptcpctl documents
// in its help; the other parity tests stay clear of them, and this table
// holds mptcpctl to what it documents.
var parityDifferences = []struct {
	name            string
	op              parityOp
	ipCode, ctlCode int
	ctlPrints       bool // mptcpctl writes to stdout
}{
	{name: "help prints on stdout", op: parityArgs("help"), ipCode: 255, ctlCode: 0, ctlPrints: true},
	{name: "laminar flag accepted", op: parityArgs("endpoint", "add", "10.0.1.1", "subflow", "laminar"), ipCode: 1, ctlCode: 0},
	{name: "change without target refused", op: parityArgs("endpoint", "change", "backup"), ipCode: 2, ctlCode: 2},
	{name: "any is not an address", op: parityArgs("endpoint", "add", "any"), ipCode: 2, ctlCode: 1},
}

func TestParityDocumentedDifferences(t *testing.T) {
	p := newParityPair(t)
	if p.ctl.path == "ip" {
		t.Skip("mptcpctl replaced by ip")
	}
	for _, tc := range parityDifferences {
		t.Run(tc.name, func(t *testing.T) {
			p.reset(t)
			ipRes := p.ip.run(t, p.ipNS.Name, tc.op.json, tc.op.args...)
			ctlRes := p.ctl.run(t, p.ctlNS.Name, tc.op.json, tc.op.args...)
			if ipRes.code != tc.ipCode {
				t.Errorf("ip mptcp %s: exit %d, want %d (stderr %q): the oracle changed", tc.op, ipRes.code, tc.ipCode, ipRes.stderr)
			}
			if ctlRes.code != tc.ctlCode {
				t.Errorf("mptcpctl %s: exit %d, want %d as documented (stderr %q)", tc.op, ctlRes.code, tc.ctlCode, ctlRes.stderr)
			}
			if (ctlRes.stdout != "") != tc.ctlPrints {
				t.Errorf("mptcpctl %s: stdout %q", tc.op, ctlRes.stdout)
			}
			if (ctlRes.code != 0) != (ctlRes.stderr != "") {
				t.Errorf("mptcpctl %s: exit %d with stderr %q", tc.op, ctlRes.code, ctlRes.stderr)
			}
		})
	}
}

// reset brings both namespaces back to an empty table and default limits.
func (p *parityPair) reset(t *testing.T) {
	t.Helper()
	p.setup(t, [][]string{{"endpoint", "flush"}, {"limits", "set", "subflows", "2", "add_addr_accepted", "0"}})
}

// setup runs ops with ip in both namespaces: what a case needs before its
// operation, made by the oracle so that only the operation tests mptcpctl.
func (p *parityPair) setup(t *testing.T, ops [][]string) {
	t.Helper()
	for _, op := range ops {
		for _, ns := range []*nstest.NS{p.ipNS, p.ctlNS} {
			if r := p.ip.run(t, ns.Name, false, op...); r.code != 0 {
				t.Fatalf("setup %q in %s: exit %d: %s", op, ns, r.code, r.stderr)
			}
		}
	}
}

func TestParityErrors(t *testing.T) {
	p := newParityPair(t)
	for _, tc := range parityErrorCases {
		t.Run(tc.name, func(t *testing.T) {
			p.reset(t)
			p.setup(t, tc.setup)
			ipRes, ctlRes, diffs := p.compare(t, tc.op)
			if ipRes.code != tc.ipCode {
				t.Errorf("ip mptcp %s: exit %d, want %d (stderr %q): the oracle changed", tc.op, ipRes.code, tc.ipCode, ipRes.stderr)
			}
			_, stateDiffs := p.compareState(t)
			diffs = append(diffs, stateDiffs...)
			if len(diffs) > 0 {
				t.Errorf("%q:\n  %s\n  ip stderr:       %q\n  mptcpctl stderr: %q",
					tc.op, strings.Join(diffs, "\n  "), ipRes.stderr, ctlRes.stderr)
			}
		})
	}
}

// TestErrorReason checks what mptcpctl's messages are held to (no root).
func TestErrorReason(t *testing.T) {
	tests := []struct{ stderr, want string }{
		{"Error: too many addresses or duplicate one: -17.\n", "too many addresses or duplicate one: -17"},
		{"Error: argument \"256\" is wrong: invalid ID\n\n", "256"},
		{"Error: argument \"ADDRESS\" is required\n", "ADDRESS"},
		{"Error: any valid address is expected rather than \"implicit\".\n", "implicit"},
		{"Command \"bogus\" is unknown, try \"ip mptcp help\".\n", "bogus"},
		{"RTNETLINK answers: No such file or directory\n", "No such file or directory"},
		{"Command line is not complete. Try option \"help\"\n", ""},
		{"Usage:\tip mptcp endpoint add ADDRESS [ dev NAME ] [ id ID ]\n", ""},
	}
	for _, tt := range tests {
		if got := errorReason(tt.stderr); got != tt.want {
			t.Errorf("errorReason(%q) = %q, want %q", tt.stderr, got, tt.want)
		}
	}
}

// TestDecodeJSONOutput checks the -j output decoding (no root).
func TestDecodeJSONOutput(t *testing.T) {
	tests := []struct {
		in         string
		textLimits bool
		want       any
		wantErr    bool
	}{
		{in: "add_addr_accepted 4 subflows 3 \n", textLimits: true,
			want: map[string]any{"add_addr_accepted": 4.0, "subflows": 3.0}},
		{in: "add_addr_accepted 4 subflows 3 \n", wantErr: true},
		{in: `{"add_addr_accepted":4,"subflows":3}` + "\n",
			want: map[string]any{"add_addr_accepted": 4.0, "subflows": 3.0}},
		{in: `[{"address":"10.0.1.1","id":1,"signal":true}]` + "\n",
			want: []any{map[string]any{"address": "10.0.1.1", "id": 1.0, "signal": true}}},
		{in: `[]`, wantErr: true}, // no newline
		{in: "[] []\n", wantErr: true},
		{in: "subflows x \n", textLimits: true, wantErr: true},
	}
	for _, tt := range tests {
		got, err := decodeJSONOutput(tt.in, tt.textLimits)
		if (err != nil) != tt.wantErr {
			t.Errorf("decodeJSONOutput(%q, %v): error %v, want error %v", tt.in, tt.textLimits, err, tt.wantErr)
			continue
		}
		if d := cmp.Diff(tt.want, got); err == nil && d != "" {
			t.Errorf("decodeJSONOutput(%q): unexpected value (-want +got):\n%s", tt.in, d)
		}
	}
}
