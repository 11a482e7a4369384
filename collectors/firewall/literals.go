package firewall

import (
	"net/netip"
	"sort"
)

// literals collects the ports, addresses and interface names a ruleset
// singles out, so the probe can be a packet none of them lists: an
// allowed service (ssh on 22, a trusted network, a VPN interface) is then
// not mistaken for an open door, while a rule that accepts every port,
// source or interface still catches the probe.
type literals struct {
	ports  []portRange
	addrs  []addrRange
	ifaces map[string]bool
}

type portRange struct{ lo, hi uint16 }

type addrRange struct{ lo, hi netip.Addr }

// merge adds what o lists.
func (l *literals) merge(o *literals) {
	l.ports = append(l.ports, o.ports...)
	l.addrs = append(l.addrs, o.addrs...)
	for n := range o.ifaces {
		l.iface(n)
	}
}

func (l *literals) port(lo, hi uint16) {
	if lo > hi {
		lo, hi = hi, lo
	}
	if len(l.ports) < 1<<16 {
		l.ports = append(l.ports, portRange{lo, hi})
	}
}

func (l *literals) addr(lo, hi netip.Addr) {
	if len(l.addrs) < 1<<16 && lo.IsValid() && hi.IsValid() {
		l.addrs = append(l.addrs, addrRange{lo.Unmap(), hi.Unmap()})
	}
}

func (l *literals) prefix(p netip.Prefix) {
	p = p.Masked()
	l.addr(p.Addr(), lastAddr(p))
}

func (l *literals) iface(name string) {
	if l.ifaces == nil {
		l.ifaces = map[string]bool{}
	}
	if len(l.ifaces) < 1<<12 {
		l.ifaces[name] = true
	}
}

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	bits := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= bits {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// freePort returns a port of 1024..65535 that no listed range covers (nor
// avoid), searching upward from start and wrapping around. When every high
// port is listed, start stands for them.
func (l *literals) freePort(start, avoid uint16) uint16 {
	rs := append([]portRange(nil), l.ports...)
	if avoid != 0 {
		rs = append(rs, portRange{avoid, avoid})
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].lo < rs[j].lo })
	var merged []portRange
	for _, r := range rs {
		if n := len(merged); n > 0 && uint32(r.lo) <= uint32(merged[n-1].hi)+1 {
			merged[n-1].hi = max(merged[n-1].hi, r.hi)
			continue
		}
		merged = append(merged, r)
	}
	p := uint32(start)
	for wrapped := false; ; {
		if p > 65535 {
			if wrapped {
				return start
			}
			p, wrapped = 1024, true
		}
		i := sort.Search(len(merged), func(i int) bool { return uint32(merged[i].hi) >= p })
		if i == len(merged) || uint32(merged[i].lo) > p {
			if wrapped && p >= uint32(start) {
				return start
			}
			return uint16(p)
		}
		p = uint32(merged[i].hi) + 1
	}
}

// Candidate addresses for the probe's source and destination: documentation
// and benchmark ranges first, then common private ranges, so the first one
// no rule lists is chosen.
var (
	candidates4 = []string{"203.0.113.77", "198.51.100.77", "192.0.2.77", "198.18.7.77", "100.64.7.77", "172.31.7.77", "10.77.7.77", "192.168.77.77", "45.33.7.77", "151.101.7.77"}
	candidates6 = []string{"2001:db8:77::77", "3fff:77::77", "2001:db8:ffff::77", "2606:4700:77::77", "fd77::77", "2a00:1450:77::77"}
)

func (l *literals) freeAddr(family string, skip netip.Addr) netip.Addr {
	cs := candidates4
	if family == "ip6" {
		cs = candidates6
	}
	var first netip.Addr
	for _, c := range cs {
		a := netip.MustParseAddr(c)
		if a == skip {
			continue
		}
		if !first.IsValid() {
			first = a
		}
		listed := false
		for _, r := range l.addrs {
			if r.lo.BitLen() == a.BitLen() && r.lo.Compare(a) <= 0 && a.Compare(r.hi) <= 0 {
				listed = true
				break
			}
		}
		if !listed {
			return a
		}
	}
	return first
}

// freeIface is an interface name no rule names.
func (l *literals) freeIface() string {
	for i := 0; ; i++ {
		n := "evprobe" + string(rune('0'+i%10))
		if i >= 10 {
			n += string(rune('a' + i/10%26))
		}
		if !l.ifaces[n] || i > 300 {
			return n
		}
	}
}

// probe builds the probe packet of one family and protocol on iif, to
// daddr (one of the host's addresses; the zero Addr: one no rule lists).
func (l *literals) probe(family, proto, iif string, daddr netip.Addr) probe {
	dport := l.freePort(47123, 0)
	saddr := l.freeAddr(family, daddr)
	if !daddr.IsValid() {
		daddr = l.freeAddr(family, saddr)
	}
	return probe{family: family, proto: proto, iif: iif, dport: dport, sport: l.freePort(51789, dport),
		saddr: saddr, daddr: daddr}
}
