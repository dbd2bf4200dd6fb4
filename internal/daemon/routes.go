package daemon

import (
	"log/slog"

	"github.com/mptcpd-go/mptcpd/nl/srcroute"
	"github.com/mptcpd-go/mptcpd/pm"
)

// router installs the source routing a plan asks for.
type router interface {
	Apply([]pm.SourceRoute) error
	Close() error
}

// srcRouter is the router of the daemon's own namespace.
type srcRouter struct {
	m   *srcroute.Manager
	log *slog.Logger
}

func newRouter(log *slog.Logger) (*srcRouter, error) {
	m, err := srcroute.New(srcroute.Config{Logger: log})
	if err != nil {
		return nil, err
	}
	return &srcRouter{m: m, log: log}, nil
}

// Apply installs want and removes what this daemon installed before and
// no longer wants, logging each change.
func (r *srcRouter) Apply(want []pm.SourceRoute) error {
	specs := make([]srcroute.Spec, len(want))
	for i, sr := range want {
		specs[i] = srcroute.Spec{LinkIndex: sr.LinkIndex, Table: sr.Table, Priority: sr.Priority, Gateways: sr.Gateways, Addrs: sr.Addrs}
	}
	ch, err := r.m.Apply(specs)
	for _, x := range ch.RulesRemoved {
		r.log.Info("source rule removed", "rule", x.String())
	}
	for _, x := range ch.RoutesRemoved {
		r.log.Info("source route removed", "route", x.String())
	}
	for _, x := range ch.RoutesAdded {
		r.log.Info("source route added", "route", x.String())
	}
	for _, x := range ch.RulesAdded {
		r.log.Info("source rule added", "rule", x.String())
	}
	return err
}

func (r *srcRouter) Close() error { return r.m.Close() }
