package walk

import (
	"errors"
	"time"

	"github.com/mptcpd-go/mptcpd/internal/testbed"
)

// step is one stop of the walk: an event, then a stay of some time.
type step struct {
	name   string // the table's row
	expect string // what a good path manager makes of it
	stay   func(*Config) time.Duration
	event  func(*testbed.Testbed) error // nil: none (the start)
}

func dwell(c *Config) time.Duration     { return c.Dwell }
func walking(c *Config) time.Duration   { return c.Dwell / 2 }
func blackZone(c *Config) time.Duration { return c.BlackZone }
func outage(c *Config) time.Duration    { return c.Outage }

func wlan(b *testbed.Testbed) *testbed.Link { return b.Link("wlan0") }
func wwan(b *testbed.Testbed) *testbed.Link { return b.Link("wwan0") }

// newNetwork is joining a Wi-Fi network on a new subnet after walking
// out of the last one's range: the address changes while the link has
// no carrier, then the carrier comes back with a default route, as a
// DHCP client and the AP would have it.
func newNetwork(b *testbed.Testbed) error {
	if err := wlan(b).Renumber(); err != nil {
		return err
	}
	return wlan(b).CarrierBack(testbed.AtAP)
}

// steps is the walk of the issue: AP1, AP2 on a new subnet, a black zone
// on 4G alone, AP3, no link at all for the outage, then back.
var steps = []step{{
	name:   "at AP1",
	expect: "wlan0 carries the data, wwan0 (4G) is the backup",
	stay:   dwell,
}, {
	name:   "leave AP1",
	expect: "wlan0 loses its carrier: the data moves to wwan0 at once",
	stay:   walking,
	event:  func(b *testbed.Testbed) error { return wlan(b).CarrierLoss(testbed.AtAP) },
}, {
	name:   "AP2, new subnet",
	expect: "wlan0 is back with a new address: a new subflow, the data back on wlan0",
	stay:   dwell,
	event:  newNetwork,
}, {
	name:   "leave AP2",
	expect: "the data moves to wwan0 again",
	stay:   walking,
	event:  func(b *testbed.Testbed) error { return wlan(b).CarrierLoss(testbed.AtAP) },
}, {
	name:   "4G black zone",
	expect: "wwan0 forwards nothing and there is no other path: no data until it ends",
	stay:   blackZone,
	event:  func(b *testbed.Testbed) error { return wwan(b).Blackhole() },
}, {
	name:   "out of the zone",
	expect: "wwan0 forwards again: the data resumes at its subflow's next retransmission, which backed off in the zone",
	stay:   walking,
	event:  func(b *testbed.Testbed) error { return wwan(b).Forward() },
}, {
	name:   "AP3, new subnet",
	expect: "a new subflow from wlan0's new address, the data back on wlan0",
	stay:   dwell,
	event:  newNetwork,
}, {
	name:   "no link at all",
	expect: "both links lose their carrier: no data for the whole outage; mptcpd keeps the last endpoints while connections use them",
	stay:   outage,
	event: func(b *testbed.Testbed) error {
		return errors.Join(wlan(b).CarrierLoss(testbed.AtAP), wwan(b).CarrierLoss(testbed.AtAP))
	},
}, {
	name:   "AP4 and 4G back",
	expect: "a new subflow on wlan0's new address; once it is up the kept endpoints go, the server resends what it held, and wwan0 gets a fresh subflow",
	stay:   dwell,
	event: func(b *testbed.Testbed) error {
		return errors.Join(wlan(b).Renumber(), wlan(b).CarrierBack(testbed.AtAP), wwan(b).CarrierBack(testbed.AtAP))
	},
}}
