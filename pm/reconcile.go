package pm

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/mptcpd-go/mptcpd/nl/mptcp"
	"github.com/mptcpd-go/mptcpd/policy"
)

// Kernel is the in-kernel path manager as the reconciler uses it.
type Kernel interface {
	Endpoints() ([]mptcp.Endpoint, error)
	AddEndpoint(mptcp.Endpoint) error
	DeleteEndpoint(mptcp.ID, netip.Addr) error
	SetEndpointFlags(mptcp.Endpoint) error
	Limits() (mptcp.Limits, error)
	SetLimits(mptcp.Limits) error
}

var _ Kernel = (*mptcp.Client)(nil)

// mutableFlags are the flags SET_FLAGS can change on a live endpoint.
const mutableFlags = mptcp.FlagBackup | mptcp.FlagFullmesh

// Reconciler makes the kernel's endpoints and limits match the plan for
// the current network and policy, touching only what it owns.
type Reconciler struct {
	k   Kernel
	st  *Store
	log *slog.Logger

	mu sync.Mutex // one pass at a time
	// adminLimits are the limits left to someone else, with the value
	// last logged, so that a limit left alone is logged once per value.
	adminLimits map[string]uint32

	// The kernel's table as the last clean pass left it, and the limits
	// that pass wanted, for ReconcileCached.
	table      []mptcp.Endpoint
	tableOK    bool
	wantLimits mptcp.Limits
	limitsOK   bool

	// Keeping endpoints through an outage (outage.go).
	keepOutage func() (ConnUse, error) // nil: keeping is off
	inOutage   bool                    // the last pass found no usable path
	kept       []mptcp.Endpoint        // ours, kept through an outage
	recent     []deletion              // ours deleted lately, while keeping is on
	inDoubt    []mptcp.Endpoint        // deleted just before the outage; their ids wait
	next       OutageStep              // what the next pass does about them
	now        func() time.Time
}

// NewReconciler returns a reconciler that acts on k and keeps ownership in
// st. log may be nil.
func NewReconciler(k Kernel, st *Store, log *slog.Logger) *Reconciler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{k: k, st: st, log: log, adminLimits: make(map[string]uint32), now: time.Now}
}

// Result is what one Reconcile did.
type Result struct {
	Plan         Plan
	Added        []mptcp.Endpoint // with the id chosen
	Deleted      []mptcp.Endpoint
	FlagsChanged []mptcp.Endpoint // with the new flags
	Adopted      []mptcp.Endpoint // foreign endpoints taken over (rule with adopt)
	Held         []Held           // wanted addresses that a foreign endpoint has
	Kept         []mptcp.Endpoint // ours, kept through an outage (see KeepThroughOutage)
	InDoubt      []mptcp.Endpoint // deleted just before the outage, to resignal
	Resignaled   []mptcp.Endpoint // announced and withdrawn again
	LimitsSet    mptcp.Limits     // the limits written, nil fields untouched
	AdminLimits  []string         // managed limits left alone: someone else set them
	Failed       []*OpError

	Changed bool // some kernel write succeeded
	// Retry asks for another pass soon: the kernel's table was not what
	// the dump said (someone raced us), so this pass's view was stale.
	Retry bool
}

// Err joins the errors of the failed operations; nil when none failed.
func (r *Result) Err() error {
	errs := make([]error, len(r.Failed))
	for i, f := range r.Failed {
		errs[i] = f
	}
	return errors.Join(errs...)
}

// Held is a wanted address that already has a foreign endpoint, which the
// reconciler leaves as it is.
type Held struct {
	Want    Want
	Foreign mptcp.Endpoint
}

func (h Held) String() string {
	return fmt.Sprintf("%s held by foreign endpoint id %d", h.Want.Endpoint.Addr, h.Foreign.ID)
}

// OpError is one failed step of a pass.
type OpError struct {
	Op       string // "add", "delete", "set flags", "read limits", "set limits", "save state"
	Endpoint mptcp.Endpoint
	Err      error
}

func (e *OpError) Error() string {
	if e.Endpoint.Addr.IsValid() {
		return fmt.Sprintf("pm: %s endpoint %s id %d: %v", e.Op, e.Endpoint.Addr, e.Endpoint.ID, e.Err)
	}
	return fmt.Sprintf("pm: %s: %v", e.Op, e.Err)
}

func (e *OpError) Unwrap() error { return e.Err }

// Reconcile brings the kernel in line with Desired(n, p, ...):
//
//   - It dumps the endpoints. Ours are those the store records with the
//     same id and address; the rest are foreign, except those whose
//     address matches a rule with Adopt, which become ours. Foreign
//     endpoints are never changed, and they take from the 8 the kernel
//     allows, unless they sit on an address the plan wants anyway: such an
//     address is left to them (Result.Held), or, for an implicit endpoint
//     the kernel made for a connection, replaced in place with ours.
//   - It deletes ours that are not wanted, changes backup and fullmesh with
//     SET_FLAGS (a delete and add would tear down live subflows), replaces
//     ours whose signal, subflow, port or interface differ (delete, then
//     add), and adds the missing ones, in that order. It picks each new
//     id itself, the lowest free one, and records it in the store before
//     the add, so that a crash right after cannot orphan the endpoint.
//   - It sets the limits the policy manages, unless someone else changed
//     them (see reconcileLimits).
//
// A failed operation does not stop the others; Result lists them. The
// error is non-nil only when the pass could not start (the dump failed).
// A pass over an unchanged network and policy writes nothing.
func (r *Reconciler) Reconcile(n Network, p *policy.Policy) (Result, error) {
	return r.reconcile(n, p, true)
}

// ReconcileCached is Reconcile for a pass triggered by a network event:
// it trusts the table the previous clean pass left instead of dumping it
// again, and reads the limits only when the wanted ones changed, so that
// an address change costs the kernel writes it needs and nothing else.
// Changes made behind the daemon's back are not seen by such a pass: a
// refused write marks the cache stale (Result.Retry), and the periodic
// full Reconcile catches the rest.
func (r *Reconciler) ReconcileCached(n Network, p *policy.Policy) (Result, error) {
	return r.reconcile(n, p, false)
}

func (r *Reconciler) reconcile(n Network, p *policy.Policy, fresh bool) (Result, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	eps := r.table
	if fresh || !r.tableOK {
		var err error
		if eps, err = r.k.Endpoints(); err != nil {
			r.tableOK = false
			return Result{}, fmt.Errorf("pm: reconcile: dump endpoints: %w", err)
		}
		fresh = true
	}
	var res Result
	ours, foreign := r.split(eps, n, p, &res)
	d := r.plan(&res, n, p, ours, foreign)
	res.Held = d.held

	failedDel := r.deleteAll(d.deletes, &res)
	r.resignal(res.Resignaled, &res)
	r.setFlagsAll(d.flags, &res)
	// Limits rise at once, before the adds, since the kernel opens
	// subflows for an endpoint only within the limit at the time of its
	// add. They fall only at a full pass: a higher limit than needed costs
	// nothing for a while, and an address that comes and goes does not
	// rewrite them each time.
	if fresh || !r.limitsOK || raisesLimits(res.Plan.Limits, r.wantLimits) {
		r.reconcileLimits(res.Plan.Limits, &res)
		r.wantLimits, r.limitsOK = res.Plan.Limits, !limitsFailed(&res)
	}
	replaced := r.addAll(d.adds, eps, failedDel, &res)
	if err := r.st.save(); err != nil {
		res.Failed = append(res.Failed, &OpError{Op: "save state", Err: err})
	}
	r.table, r.tableOK = tableAfter(eps, &res), len(res.Failed) == 0 && !res.Retry && !replaced
	return res, nil
}

// plan sets res.Plan and returns the writes it needs, keeping endpoints
// through an outage when that is on (outage.go): kept endpoints are
// neither deleted nor changed, and take their place in the table, until
// they are released; wanted addresses they or endpoints in doubt have
// wait until then.
func (r *Reconciler) plan(res *Result, n Network, p *policy.Policy, ours, foreign []mptcp.Endpoint) changes {
	now := r.now()
	r.recent = slices.DeleteFunc(r.recent, func(d deletion) bool { return now.Sub(d.at) > resignalWindow })
	r.kept = keptStill(r.kept, ours)
	step := r.next
	r.next = OutageStep{}
	var released []mptcp.Endpoint
	if step.ReleaseKept && len(r.kept) > 0 {
		released, r.kept = r.kept, nil
		r.log.Info("deleting the endpoints kept through the outage", "why", step.Why, "ids", ids(released))
	}
	res.Plan = planAround(n, p, append(slices.Clone(foreign), r.kept...))
	outage := len(res.Plan.Endpoints) == 0
	if step.Resignal && len(r.inDoubt) > 0 {
		res.Resignaled, r.inDoubt = r.inDoubt, nil
		r.log.Info("announcing and withdrawing again the endpoints deleted just before the outage", "why", step.Why, "ids", ids(res.Resignaled))
	}
	if r.keepOutage != nil && outage && !r.inOutage && !step.ReleaseKept {
		r.startOutage(ours, now)
	}
	r.inOutage = outage
	res.Kept, res.InDoubt = slices.Clone(r.kept), slices.Clone(r.inDoubt)
	if len(r.kept) == 0 {
		d := diff(waitingFor(res.Plan, r.inDoubt), without(ours, released), foreign)
		d.deletes = append(released, d.deletes...)
		return d
	}
	if extra := keptSubflows(r.kept, res.Plan); extra > 0 && p.Settings.Subflows.Mode == policy.LimitAuto && res.Plan.Limits.Subflows != nil {
		v := min(mptcp.MPTCP_PM_LIMITS_MAX, *res.Plan.Limits.Subflows+extra)
		res.Plan.Limits.Subflows = &v
	}
	return diff(waitingFor(res.Plan, append(slices.Clone(r.kept), r.inDoubt...)), without(ours, r.kept), foreign)
}

// startOutage keeps the endpoints that live connections use, and puts
// in doubt those deleted just before while connections lived.
func (r *Reconciler) startOutage(ours []mptcp.Endpoint, now time.Time) {
	recent := r.recent
	r.recent = nil
	use, err := r.keepOutage()
	if err != nil {
		r.log.Warn("no usable path, and the connections cannot be listed: deleting the endpoints", "err", err)
		return
	}
	// A new outage before the last one's endpoints went adds to them.
	for _, o := range ours {
		if use.Local[o.Addr] && !slices.ContainsFunc(r.kept, func(k mptcp.Endpoint) bool { return k.ID == o.ID }) {
			r.kept = append(r.kept, o)
		}
	}
	if len(r.kept) > 0 {
		r.log.Info("no usable path: keeping the endpoints live connections use until new subflows carry them", "ids", ids(r.kept))
	}
	if use.Live == 0 {
		return
	}
	if doubt := inDoubtAt(recent, ours, now); len(doubt) > 0 {
		r.inDoubt = append(r.inDoubt, doubt...)
		r.log.Info("endpoints deleted just before the outage: their removal may not have reached the peers", "ids", ids(doubt))
	}
}

// resignal tells the peers again that endpoints in doubt are gone: each
// is added back as a signal endpoint under its old id and address, which
// announces it on every connection there and then, and deleted at once,
// which sends its RM_ADDR over a working subflow. A failure is logged
// and not retried: this is a second chance, not a promise.
func (r *Reconciler) resignal(eps []mptcp.Endpoint, res *Result) {
	done := res.Resignaled[:0]
	for _, e := range eps {
		s := mptcp.Endpoint{ID: e.ID, Addr: e.Addr, Flags: mptcp.FlagSignal}
		r.st.own(s)
		if err := r.st.flush(); err != nil {
			r.st.forget(s.ID)
			r.log.Warn("cannot resignal the removal of an endpoint", "id", e.ID, "addr", e.Addr, "err", err)
			continue
		}
		if err := r.k.AddEndpoint(s); err != nil {
			r.st.forget(s.ID)
			r.log.Warn("cannot resignal the removal of an endpoint", "id", e.ID, "addr", e.Addr, "err", err)
			continue
		}
		res.Changed = true
		if err := r.k.DeleteEndpoint(s.ID, s.Addr); err != nil {
			// Ours and unwanted: the retry pass deletes it.
			r.fail(res, "delete", s, err)
			continue
		}
		r.st.forget(s.ID)
		done = append(done, e)
	}
	res.Resignaled = done
}

// KeepThroughOutage turns keeping endpoints through an outage on, with
// use telling which connections live when one begins, or off with nil
// (outage.go). Turned off, the next pass deletes the kept ones.
func (r *Reconciler) KeepThroughOutage(use func() (ConnUse, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.keepOutage = use
	if use == nil {
		r.next = OutageStep{ReleaseKept: true, Why: "keeping through outages is off"}
		r.inDoubt, r.recent = nil, nil
	}
}

// Outage lets the next pass take step about the endpoints kept through
// an outage and those in doubt (NextOutageStep).
func (r *Reconciler) Outage(step OutageStep) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next = step
}

func ids(eps []mptcp.Endpoint) []int {
	out := make([]int, len(eps))
	for i, e := range eps {
		out[i] = int(e.ID)
	}
	return out
}

// tableAfter is the kernel's table once res's writes are done.
func tableAfter(before []mptcp.Endpoint, res *Result) []mptcp.Endpoint {
	gone := make(map[mptcp.ID]bool, len(res.Deleted))
	for _, e := range res.Deleted {
		gone[e.ID] = true
	}
	flags := make(map[mptcp.ID]mptcp.Flags, len(res.FlagsChanged))
	for _, e := range res.FlagsChanged {
		flags[e.ID] = e.Flags
	}
	after := make([]mptcp.Endpoint, 0, len(before)+len(res.Added))
	for _, e := range before {
		if gone[e.ID] {
			continue
		}
		if f, ok := flags[e.ID]; ok {
			e.Flags = f
		}
		after = append(after, e)
	}
	return append(after, res.Added...)
}

// raisesLimits reports whether want manages a limit that last did not, or
// wants one higher than last.
func raisesLimits(want, last mptcp.Limits) bool {
	up := func(w, l *uint32) bool { return w != nil && (l == nil || *w > *l) }
	return up(want.Subflows, last.Subflows) || up(want.AddAddrAccepted, last.AddAddrAccepted)
}

func limitsFailed(res *Result) bool {
	return slices.ContainsFunc(res.Failed, func(f *OpError) bool { return f.Op == "read limits" || f.Op == "set limits" })
}

// split sorts the kernel's endpoints into ours and foreign, adopting
// where the policy says so, and forgets records the kernel no longer
// matches (a delete whose answer was lost, an add that never happened
// after its write-ahead, an endpoint someone else deleted).
func (r *Reconciler) split(eps []mptcp.Endpoint, n Network, p *policy.Policy, res *Result) (ours, foreign []mptcp.Endpoint) {
	for _, e := range eps {
		e.Addr = e.Addr.Unmap()
		implicit := e.Flags&mptcp.FlagImplicit != 0
		switch {
		case !implicit && r.st.owns(e):
			ours = append(ours, e)
		case !implicit && adoptable(n, p, e):
			r.st.own(e)
			r.log.Info("adopting endpoint", "id", e.ID, "addr", e.Addr, "flags", e.Flags.String())
			res.Adopted = append(res.Adopted, e)
			ours = append(ours, e)
		default:
			foreign = append(foreign, e)
		}
	}
	for _, o := range r.st.Endpoints() {
		if !slices.ContainsFunc(ours, func(e mptcp.Endpoint) bool { return e.ID == o.ID && e.Addr == o.Addr }) {
			r.log.Debug("forgetting endpoint the kernel does not have", "id", o.ID, "addr", o.Addr)
			r.st.forget(o.ID)
		}
	}
	return ours, foreign
}

// adoptable reports whether the rule for e's address asks to adopt it.
func adoptable(n Network, p *policy.Policy, e mptcp.Endpoint) bool {
	s := policy.Subject{Addr: e.Addr}
	link, ok := n.Link(e.IfIndex)
	for _, a := range n.Addrs {
		if a.Addr() == e.Addr && (!ok || a.LinkIndex == e.IfIndex) {
			link, ok = n.Link(a.LinkIndex)
			break
		}
	}
	if ok {
		s.Interface, s.Kind, s.DefaultRoute = link.Name, link.Kind, link.DefaultRoute4 || link.DefaultRoute6
	}
	rule, ok := p.Match(s)
	return ok && rule.Adopt && !rule.Ignore
}

// planAround computes the plan with the capacity foreign endpoints leave.
// A foreign endpoint on a wanted address serves that address, so it does
// not take a place from the plan; since which addresses are wanted
// depends on the capacity, the capacity grows from "8 - foreign" until
// it counts exactly the foreign endpoints the plan wants. It only grows
// (a larger capacity keeps a superset) and stops within 8 steps.
func planAround(n Network, p *policy.Policy, foreign []mptcp.Endpoint) Plan {
	byAddr := foreignByAddr(foreign)
	free := max(0, MaxEndpoints-len(foreign))
	capacity := free
	for {
		plan := Desired(n, p, capacity)
		served := 0
		for _, w := range plan.Endpoints {
			if f, ok := byAddr[w.Endpoint.Addr]; ok && servesWant(f, w) {
				served++
			}
		}
		if free+served <= capacity {
			return plan
		}
		capacity = free + served
	}
}

func foreignByAddr(foreign []mptcp.Endpoint) map[netip.Addr]mptcp.Endpoint {
	m := make(map[netip.Addr]mptcp.Endpoint, len(foreign))
	for _, f := range foreign {
		if _, dup := m[f.Addr]; !dup {
			m[f.Addr] = f
		}
	}
	return m
}

// servesWant reports whether foreign endpoint f takes care of w without
// another place in the table: f is left to serve w's address, or, being
// implicit and without port like w, is replaced by w in place.
func servesWant(f mptcp.Endpoint, w Want) bool {
	return f.Flags&mptcp.FlagImplicit == 0 || w.Endpoint.Port == 0
}

// changes are the kernel writes a pass needs.
type changes struct {
	deletes []mptcp.Endpoint
	flags   []mptcp.Endpoint // ours with the wanted flags
	adds    []addition
	held    []Held
}

type addition struct {
	want     Want
	replaces *mptcp.Endpoint // ours, deleted first; nil if none
	implicit *mptcp.Endpoint // the implicit endpoint the add replaces in place
}

// diff compares the plan with the table, by address: the plan has one
// endpoint per address.
func diff(plan Plan, ours, foreign []mptcp.Endpoint) changes {
	var c changes
	fByAddr := foreignByAddr(foreign)
	oByAddr := make(map[netip.Addr]mptcp.Endpoint, len(ours))
	for _, o := range ours { // by id: a second one on an address is deleted
		if _, dup := oByAddr[o.Addr]; !dup {
			oByAddr[o.Addr] = o
		}
	}
	matched := make(map[mptcp.ID]bool)
	for _, w := range plan.Endpoints {
		addr := w.Endpoint.Addr
		if f, ok := fByAddr[addr]; ok && servesWant(f, w) {
			if f.Flags&mptcp.FlagImplicit == 0 {
				c.held = append(c.held, Held{Want: w, Foreign: f})
			} else {
				c.adds = append(c.adds, addition{want: w, implicit: &f})
			}
			continue
		}
		o, ok := oByAddr[addr]
		switch {
		case !ok:
			c.adds = append(c.adds, addition{want: w})
			continue
		case o.Port != w.Endpoint.Port || o.IfIndex != w.Endpoint.IfIndex ||
			o.Flags&^mutableFlags != w.Endpoint.Flags&^mutableFlags:
			c.adds = append(c.adds, addition{want: w, replaces: &o})
			c.deletes = append(c.deletes, o)
		case o.Flags != w.Endpoint.Flags:
			e := o
			e.Flags = w.Endpoint.Flags
			c.flags = append(c.flags, e)
		}
		matched[o.ID] = true
	}
	for _, o := range ours {
		if !matched[o.ID] {
			c.deletes = append(c.deletes, o)
		}
	}
	slices.SortFunc(c.deletes, func(a, b mptcp.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return c
}

// deleteAll deletes endpoints and returns the ids that are still there.
func (r *Reconciler) deleteAll(dels []mptcp.Endpoint, res *Result) map[mptcp.ID]bool {
	stuck := make(map[mptcp.ID]bool)
	for _, e := range dels {
		err := r.k.DeleteEndpoint(e.ID, e.Addr)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			r.st.forget(e.ID)
		}
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				stuck[e.ID] = true
			}
			r.fail(res, "delete", e, err)
			continue
		}
		r.log.Debug("deleted endpoint", "id", e.ID, "addr", e.Addr)
		// Those of an outage's passes had no connection on them.
		if r.keepOutage != nil && !r.inOutage {
			r.recent = append(r.recent, deletion{e, r.now()})
		}
		res.Deleted = append(res.Deleted, e)
		res.Changed = true
	}
	return stuck
}

func (r *Reconciler) setFlagsAll(eps []mptcp.Endpoint, res *Result) {
	for _, e := range eps {
		if err := r.k.SetEndpointFlags(e); err != nil {
			r.fail(res, "set flags", e, err)
			continue
		}
		r.log.Debug("changed endpoint flags", "id", e.ID, "addr", e.Addr, "flags", e.Flags.String())
		res.FlagsChanged = append(res.FlagsChanged, e)
		res.Changed = true
	}
}

// addAll adds endpoints with ids of our choosing, recorded in the store
// (and saved) before any of them reaches the kernel. before is the table
// as dumped; stuck the ids of ours that could not be deleted.
func (r *Reconciler) addAll(adds []addition, before []mptcp.Endpoint, stuck map[mptcp.ID]bool, res *Result) (replaced bool) {
	used := make(map[mptcp.ID]bool)
	for _, e := range before {
		used[e.ID] = true
	}
	for _, e := range res.Deleted {
		used[e.ID] = false
	}
	for _, e := range r.inDoubt {
		used[e.ID] = true
	}
	type pending struct {
		e        mptcp.Endpoint // as sent: ID 0 to replace an implicit endpoint
		id       mptcp.ID       // the id it will have
		implicit bool
	}
	var todo []pending
	for _, a := range adds {
		e := a.want.Endpoint
		if a.replaces != nil && stuck[a.replaces.ID] {
			r.fail(res, "add", e, fmt.Errorf("old endpoint id %d could not be deleted", a.replaces.ID))
			continue
		}
		p := pending{e: e}
		if a.implicit != nil {
			// Only an add without id replaces an implicit endpoint, and
			// the new one keeps its id.
			p.id, p.implicit = a.implicit.ID, true
		} else {
			p.id = freeID(used, r.st)
			p.e.ID = p.id
		}
		used[p.id] = true
		r.st.own(mptcp.Endpoint{ID: p.id, Addr: e.Addr, Port: e.Port})
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return false
	}
	// Write-ahead: the records are on file before the kernel is asked.
	if err := r.st.flush(); err != nil {
		err = fmt.Errorf("write-ahead record: %w", err)
		// Without the record an endpoint could outlive our knowledge of it.
		for _, p := range todo {
			r.st.forget(p.id)
			r.fail(res, "add", p.e, err)
		}
		return false
	}
	for _, p := range todo {
		if err := r.k.AddEndpoint(p.e); err != nil {
			r.st.forget(p.id)
			r.fail(res, "add", p.e, err)
			continue
		}
		e := p.e
		e.ID = p.id
		r.log.Debug("added endpoint", "id", e.ID, "addr", e.Addr, "port", e.Port, "flags", e.Flags.String(), "ifindex", e.IfIndex)
		res.Added = append(res.Added, e)
		res.Changed = true
		replaced = replaced || p.implicit
	}
	if replaced {
		r.confirmImplicit(res)
	}
	return replaced
}

// confirmImplicit checks the ids of endpoints that replaced implicit ones:
// had the implicit endpoint gone in the meantime, the kernel chose another
// id, and the record must follow or the endpoint would look foreign.
func (r *Reconciler) confirmImplicit(res *Result) {
	eps, err := r.k.Endpoints()
	if err != nil {
		res.Retry = true
		r.log.Warn("cannot confirm the ids of endpoints that replaced implicit ones", "err", err)
		return
	}
	for i, a := range res.Added {
		for _, e := range eps {
			if e.Addr.Unmap() == a.Addr && e.Port == a.Port && e.Flags&mptcp.FlagImplicit == 0 && e.ID != a.ID {
				r.st.forget(a.ID)
				r.st.own(e)
				res.Added[i].ID = e.ID
			}
		}
	}
}

// freeID returns the lowest id in use neither in the kernel's table nor in
// the store. With at most 8 endpoints one is always free.
func freeID(used map[mptcp.ID]bool, st *Store) mptcp.ID {
	for i := 1; i <= mptcp.MPTCP_PM_MAX_ADDR_ID; i++ {
		if id := mptcp.ID(i); !used[id] && !st.reserved(id) {
			return id
		}
	}
	return 0 // unreachable: 255 ids for at most 8 endpoints and their records
}

// fail records a failed operation, and asks for a retry when the error
// says the kernel's table was not what we dumped.
func (r *Reconciler) fail(res *Result, op string, e mptcp.Endpoint, err error) {
	oe := &OpError{Op: op, Endpoint: e, Err: err}
	res.Failed = append(res.Failed, oe)
	if raced(err) {
		res.Retry = true
	}
	r.log.Warn("endpoint operation failed", "err", oe)
}

func raced(err error) bool {
	return errors.Is(err, os.ErrExist) || errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, syscall.ERANGE) || errors.Is(err, syscall.EBUSY)
}

// limitField names one of the two limits in the kernel's and the store's
// structs.
type limitField struct {
	name     string
	def      uint32 // the kernel's default
	kernel   func(*mptcp.Limits) **uint32
	recorded func(*recordedLimits) **uint32
}

var limitFields = [...]limitField{
	{"subflows", 2,
		func(l *mptcp.Limits) **uint32 { return &l.Subflows },
		func(l *recordedLimits) **uint32 { return &l.Subflows }},
	{"add_addr_accepted", 0,
		func(l *mptcp.Limits) **uint32 { return &l.AddAddrAccepted },
		func(l *recordedLimits) **uint32 { return &l.AddAddrAccepted }},
}

// reconcileLimits sets the limits of want (nil: not managed). A limit
// whose kernel value differs from the one we last set was changed by an
// administrator: it is left alone, logged once, for as long as it
// differs. Without a record (first run), a value other than the kernel's
// default counts as set by an administrator too; a default one is ours
// to change.
func (r *Reconciler) reconcileLimits(want mptcp.Limits, res *Result) {
	if want.Subflows == nil && want.AddAddrAccepted == nil {
		return
	}
	cur, err := r.k.Limits()
	if err != nil {
		res.Failed = append(res.Failed, &OpError{Op: "read limits", Err: err})
		return
	}
	var set mptcp.Limits
	for _, f := range limitFields {
		w, c := *f.kernel(&want), *f.kernel(&cur)
		if w == nil || c == nil {
			continue
		}
		rec, has := r.st.limit(f)
		if (has && *c != rec) || (!has && *c != f.def) {
			if v, logged := r.adminLimits[f.name]; !logged || v != *c {
				r.log.Info("limit set by someone else, leaving it alone", "limit", f.name, "value", *c)
				r.adminLimits[f.name] = *c
			}
			res.AdminLimits = append(res.AdminLimits, f.name)
			continue
		}
		delete(r.adminLimits, f.name)
		if *c == *w {
			r.st.setLimit(f, *w)
			continue
		}
		*f.kernel(&set) = w
	}
	if set.Subflows == nil && set.AddAddrAccepted == nil {
		return
	}
	if err := r.k.SetLimits(set); err != nil {
		res.Failed = append(res.Failed, &OpError{Op: "set limits", Err: err})
		r.log.Warn("setting limits failed", "err", err)
		return
	}
	for _, f := range limitFields {
		if v := *f.kernel(&set); v != nil {
			r.st.setLimit(f, *v)
			r.log.Debug("set limit", "limit", f.name, "value", *v)
		}
	}
	res.LimitsSet = set
	res.Changed = true
}
