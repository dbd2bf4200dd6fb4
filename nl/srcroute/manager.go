package srcroute

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
)

// Config configures New.
type Config struct {
	// NetNS is the network namespace to manage, as a descriptor (for
	// example nl/netns Handle.FD()); 0 is the namespace of the calling
	// thread. The descriptor is needed only during New.
	NetNS int
	// Logger gets each change at debug level; nil discards them.
	Logger *slog.Logger
}

// kernel is what the manager needs from rtnetlink; rtnl is the real one,
// tests use a fake.
type kernel interface {
	// dump reads the routes and rules carrying Protocol in tables of
	// their own (see ownTable), of both families.
	dump() (installed, error)
	addRoute(Route) error
	addRule(Rule) error
	// The removals delete an object the last dump read, and return
	// errGone if the kernel no longer has it.
	delRoute(Route) error
	delRule(Rule) error
	close() error
}

// errGone reports a removal of something the kernel had already dropped
// (an IPv4 route goes with its link or source address): not a failure.
var errGone = errors.New("already gone")

// errClosed is what a closed Manager answers.
var errClosed = errors.New("srcroute: manager is closed")

// Manager keeps the source routing of one network namespace. Its methods
// may be called from several goroutines; they run one at a time.
type Manager struct {
	mu  sync.Mutex
	k   kernel // nil once closed
	log *slog.Logger
}

// New opens rtnetlink in the namespace cfg.NetNS.
func New(cfg Config) (*Manager, error) {
	k, err := newKernel(cfg.NetNS)
	if err != nil {
		return nil, err
	}
	return newManager(k, cfg.Logger), nil
}

func newManager(k kernel, log *slog.Logger) *Manager {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Manager{k: k, log: log}
}

// Apply makes the namespace's marked routes and rules exactly those want
// needs, changing only what differs, and returns what it changed. An
// invalid want changes nothing. Otherwise each route or rule that fails is
// reported in the joined error, and the others are still applied.
func (m *Manager) Apply(want []Spec) (Changes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.reconcile(want)
}

// Clear removes every route and rule carrying Protocol, in tables of their
// own, whoever installed them.
func (m *Manager) Clear() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, err := m.reconcile(nil)
	return err
}

// Close releases the rtnetlink socket; what is installed stays. It is safe
// to call more than once.
func (m *Manager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.k == nil {
		return nil
	}
	err := m.k.close()
	m.k = nil
	return err
}

func (m *Manager) reconcile(want []Spec) (Changes, error) {
	if m.k == nil {
		return Changes{}, errClosed
	}
	have, err := m.k.dump()
	if err != nil {
		return Changes{}, err
	}
	plan, err := diff(have, want)
	if err != nil {
		return Changes{}, err
	}
	var (
		done Changes
		errs []error
	)
	done.RulesRemoved = execute(m.log, plan.RulesRemoved, "removing rule", m.k.delRule, &errs)
	done.RoutesRemoved = execute(m.log, plan.RoutesRemoved, "removing route", m.k.delRoute, &errs)
	done.RoutesAdded = execute(m.log, plan.RoutesAdded, "adding route", m.k.addRoute, &errs)
	done.RulesAdded = execute(m.log, plan.RulesAdded, "adding rule", m.k.addRule, &errs)
	return done, errors.Join(errs...)
}

// execute applies op to each item and returns those it changed, adding an
// error naming the item to errs for each failure.
func execute[T fmt.Stringer](log *slog.Logger, items []T, what string, op func(T) error, errs *[]error) []T {
	var done []T
	for _, it := range items {
		switch err := op(it); {
		case err == nil:
			log.Debug("srcroute: "+what, "object", it.String())
			done = append(done, it)
		case errors.Is(err, errGone):
			log.Debug("srcroute: "+what+": already gone", "object", it.String())
		default:
			*errs = append(*errs, fmt.Errorf("srcroute: %s %s: %w", what, it, err))
		}
	}
	return done
}
