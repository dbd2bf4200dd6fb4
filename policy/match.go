package policy

import (
	"net/netip"
	"path"
	"slices"
)

// Match returns the first rule that matches s. No match means the address
// gets no endpoint. The policy's Settings (skip-loopback, check-route, ...)
// are the caller's to apply before asking.
func (p *Policy) Match(s Subject) (*Rule, bool) {
	for i := range p.Rules {
		if p.Rules[i].Matches(s) {
			return &p.Rules[i], true
		}
	}
	return nil, false
}

// Matches reports whether every criterion the rule sets matches s.
func (r *Rule) Matches(s Subject) bool {
	if len(r.Names) > 0 && !slices.ContainsFunc(r.Names, func(g string) bool {
		ok, _ := path.Match(g, s.Interface)
		return ok
	}) {
		return false
	}
	if len(r.Kinds) > 0 && !slices.Contains(r.Kinds, s.Kind) {
		return false
	}
	addr := s.Addr.Unmap()
	family := 6
	if addr.Is4() {
		family = 4
	}
	if len(r.Families) > 0 && !slices.Contains(r.Families, family) {
		return false
	}
	if len(r.Prefixes) > 0 && !slices.ContainsFunc(r.Prefixes, func(p netip.Prefix) bool { return p.Contains(addr) }) {
		return false
	}
	return r.DefaultRoute == nil || *r.DefaultRoute == s.DefaultRoute
}

// matchesAll reports whether the rule has no criteria.
func (r *Rule) matchesAll() bool {
	return len(r.Names) == 0 && len(r.Kinds) == 0 && len(r.Families) == 0 &&
		len(r.Prefixes) == 0 && r.DefaultRoute == nil
}

// ClassifyName returns the kind the first classify statement whose glob
// matches name gives, or false when none does.
func (p *Policy) ClassifyName(name string) (Kind, bool) {
	for _, c := range p.Classify {
		if ok, _ := path.Match(c.Pattern, name); ok {
			return c.Kind, true
		}
	}
	return 0, false
}
