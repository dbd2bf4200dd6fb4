//go:build race

package userspace_test

// raceEnabled: the race detector makes the fake kernel about ten times
// slower, so the long tests do less.
const raceEnabled = true
