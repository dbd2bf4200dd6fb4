package srcroute

import (
	"maps"
	"slices"
)

// installed is what the kernel holds under Protocol, as read by a dump.
// The same object may appear twice (two marked IPv6 routes differing only
// in metric, say); the surplus copies are stale.
type installed struct {
	routes []Route
	rules  []Rule
}

// diff returns what turns have into what want needs: the stale objects to
// remove and the missing ones to add, in the order to do it. Objects in
// both are left alone. It fails, planning nothing, when want is invalid.
func diff(have installed, want []Spec) (Changes, error) {
	routes, rules, err := desired(want)
	if err != nil {
		return Changes{}, err
	}
	var c Changes
	c.RoutesRemoved, c.RoutesAdded = diffSets(have.routes, routes, compareRoutes)
	c.RulesRemoved, c.RulesAdded = diffSets(have.rules, rules, compareRules)
	return c, nil
}

// diffSets returns the elements of have that want lacks (and the duplicates
// in have), and those of want that have lacks, each sorted by compare.
// want must not hold duplicates.
func diffSets[T comparable](have, want []T, compare func(a, b T) int) (remove, add []T) {
	wanted := make(map[T]bool, len(want))
	for _, w := range want {
		wanted[w] = true
	}
	kept := make(map[T]bool, len(want))
	for _, h := range have {
		if wanted[h] && !kept[h] {
			kept[h] = true
			continue
		}
		remove = append(remove, h)
	}
	for _, w := range want {
		if !kept[w] {
			add = append(add, w)
		}
	}
	slices.SortFunc(remove, compare)
	slices.SortFunc(add, compare)
	return remove, add
}

func sortedKeys[T comparable](set map[T]bool, compare func(a, b T) int) []T {
	return slices.SortedFunc(maps.Keys(set), compare)
}
