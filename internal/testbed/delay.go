package testbed

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// This kernel has no netem, so a path's delay comes from a delay line in
// the AP: the AP routes what it forwards into a TUN device, this process
// reads each packet, holds it for the delay and writes it into a second
// TUN device, where the kernel receives it and forwards it on. One TUN
// per direction of travel:
//
//	lan ─(rule iif lan: dev dly-up)─▶ dly-up ⇒ [delay] ⇒ dly-down ─▶ main table ─▶ wan
//	wan ─(rule iif wan: dev dly-down)─▶ dly-down ⇒ [delay] ⇒ dly-up ─▶ main table ─▶ lan
//
// The rules come after the local table (the AP still answers for
// itself) and after the blackhole rules (Blackhole still works).
const (
	delayUp       = "dly-up"   // read: packets from the laptop side
	delayDown     = "dly-down" // read: packets from the server side
	delayPref     = "200"
	delayTableUp  = "200"
	delayTableDwn = "201"
	// delayQueue bounds the packets in flight on one direction of a
	// line: a full line drops, as a real queue would. At 100 Mbit/s and
	// 100 ms one way, 850 full-size packets are in flight.
	delayQueue = 4096
)

// delayLine is a running delay line of one link.
type delayLine struct {
	delay    time.Duration
	up, down *os.File
	wg       sync.WaitGroup
	dropped  [2]uint64
}

// startDelay builds the delay line of l's AP: d each way.
func (l *Link) startDelay(d time.Duration) error {
	var up, down *os.File
	err := l.AP.Do(func() error {
		var err error
		if up, err = openTUN(delayUp); err != nil {
			return err
		}
		down, err = openTUN(delayDown)
		return err
	})
	if err != nil {
		if up != nil {
			up.Close()
		}
		return fmt.Errorf("%s: delay line: %w", l.AP, err)
	}
	line := &delayLine{delay: d, up: up, down: down}
	if err := l.AP.ipBatch(
		"link set "+delayUp+" up",
		"link set "+delayDown+" up",
		"route add default dev "+delayUp+" table "+delayTableUp,
		"route add default dev "+delayDown+" table "+delayTableDwn,
		"rule add pref "+delayPref+" iif "+apLaptopSide+" table "+delayTableUp,
		"rule add pref "+delayPref+" iif "+apServerSide+" table "+delayTableDwn,
	); err != nil {
		line.stop()
		return err
	}
	for _, s := range []string{delayUp, delayDown} {
		// Forwarded packets come back in through the TUNs.
		if err := l.AP.Sysctl("net.ipv4.conf."+s+".rp_filter", "0"); err != nil {
			line.stop()
			return err
		}
	}
	line.wg.Add(2)
	go line.run(up, down, &line.dropped[0])
	go line.run(down, up, &line.dropped[1])
	l.delay = line
	return nil
}

// run moves packets from in to out, each delay after it arrived.
func (d *delayLine) run(in, out *os.File, dropped *uint64) {
	defer d.wg.Done()
	type packet struct {
		due  time.Time
		data []byte
	}
	q := make(chan packet, delayQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			if wait := time.Until(p.due); wait > 0 {
				time.Sleep(wait)
			}
			if _, err := out.Write(p.data); err != nil && errors.Is(err, os.ErrClosed) {
				for range q { // drain: the reader is ending too
				}
				return
			}
		}
	}()
	buf := make([]byte, 1<<16)
	for {
		n, err := in.Read(buf)
		if err != nil {
			break
		}
		select {
		case q <- packet{due: time.Now().Add(d.delay), data: append([]byte(nil), buf[:n]...)}:
		default:
			*dropped++
		}
	}
	close(q)
	<-done
}

// stop closes the TUNs, which ends the goroutines and removes the
// devices (and with them their routes).
func (d *delayLine) stop() {
	for _, f := range []*os.File{d.up, d.down} {
		if f != nil {
			f.Close()
		}
	}
	d.wg.Wait()
}

// openTUN creates a TUN device named name in the calling thread's
// namespace, raw IP packets without a header, non-blocking so that Go's
// poller waits for it and Close ends a pending Read.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open /dev/net/tun: %w", err)
	}
	var req struct {
		name  [unix.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(req.name[:], name)
	req.flags = unix.IFF_TUN | unix.IFF_NO_PI
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req))); errno != 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("TUNSETIFF %s: %w", name, errno)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}
