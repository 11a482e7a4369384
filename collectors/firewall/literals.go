package firewall

import (
	"math/bits"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// literals collects the ports, addresses and interface names a ruleset
// singles out. The probes are chosen from them:
//
//   - destination port and source address: one value no rule lists (every
//     unlisted value meets every rule the same way, so one stands for all),
//     plus one value in each listed stretch so broad that listing it is not
//     naming a service (a port range of 1,024 ports or more, an address
//     block of /7 or wider): a rule that accepts "tcp dport 1024-65535" or
//     "ip saddr 0.0.0.0/0" is no allowed service.
//   - source port: chosen by whoever connects, so every stretch the rules
//     distinguish is tried, listed or not ("udp sport 53 accept" opens every
//     destination port to a sender using port 53).
//
// A listed port or a listed source network narrower than that (ssh on 22,
// a trusted LAN) is an allowed service and does not break default deny.
type literals struct {
	dports []portRange
	sports []portRange
	addrs  []addrRange
	ifaces map[string]bool
}

type portRange struct{ lo, hi uint16 }

type addrRange struct{ lo, hi netip.Addr }

// Bounds: a hostile ruleset may list a great many values.
const (
	maxListed    = 1 << 16
	maxPortReps  = 64
	maxSportReps = 32
	maxAddrReps  = 64
	// broadPorts: a listed port range at least this wide is not a service.
	broadPorts = 1024
	// broadPrefix: a listed address block of this prefix length or shorter
	// is not a network one trusts.
	broadPrefix = 7
)

// merge adds what o lists.
func (l *literals) merge(o *literals) {
	l.dports = append(l.dports, o.dports...)
	l.sports = append(l.sports, o.sports...)
	l.addrs = append(l.addrs, o.addrs...)
	for n := range o.ifaces {
		l.iface(n)
	}
}

func (l *literals) port(lo, hi uint16) { l.dports = addPort(l.dports, lo, hi) }

func (l *literals) sport(lo, hi uint16) { l.sports = addPort(l.sports, lo, hi) }

func addPort(rs []portRange, lo, hi uint16) []portRange {
	if lo > hi {
		lo, hi = hi, lo
	}
	if len(rs) < maxListed {
		rs = append(rs, portRange{lo, hi})
	}
	return rs
}

func (l *literals) addr(lo, hi netip.Addr) {
	lo, hi = lo.Unmap(), hi.Unmap()
	if len(l.addrs) < maxListed && lo.IsValid() && hi.IsValid() && lo.BitLen() == hi.BitLen() {
		if hi.Less(lo) {
			lo, hi = hi, lo
		}
		l.addrs = append(l.addrs, addrRange{lo, hi})
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
	n := p.Bits()
	for i := range b {
		for j := 0; j < 8; j++ {
			if i*8+j >= n {
				b[i] |= 0x80 >> j
			}
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// portStretches splits 1..65535 (port 0 cannot be connected to) at every
// listed boundary: within one stretch every port meets every rule the same
// way. listed tells whether any listed range covers the stretch.
func portStretches(rs []portRange) (lo []uint32, hi []uint32, listed []bool) {
	cuts := []uint32{1, 65536}
	for _, r := range rs {
		cuts = append(cuts, max(uint32(r.lo), 1), uint32(r.hi)+1)
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	merged := mergePorts(rs)
	for i := 0; i+1 < len(cuts); i++ {
		a, b := cuts[i], cuts[i+1]-1
		j := sort.Search(len(merged), func(k int) bool { return uint32(merged[k].hi) >= a })
		cov := j < len(merged) && uint32(merged[j].lo) <= a
		lo, hi, listed = append(lo, a), append(hi, b), append(listed, cov)
	}
	return lo, hi, listed
}

func mergePorts(rs []portRange) []portRange {
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b portRange) int { return int(a.lo) - int(b.lo) })
	var out []portRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.lo) <= uint32(out[n-1].hi)+1 {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// dportReps: an unlisted port (preferring 47123, the top of the range
// otherwise) and one port in each broad listed stretch.
func (l *literals) dportReps() []uint16 {
	lo, hi, listed := portStretches(l.dports)
	var out []uint16
	unlisted := -1
	high := -1
	for i := range lo {
		if listed[i] {
			continue
		}
		if lo[i] <= 47123 && 47123 <= hi[i] {
			high = 47123
			break
		}
		if hi[i] >= 1024 && high < 0 {
			high = int(max(lo[i], 1024))
		}
		if unlisted < 0 {
			unlisted = int(lo[i])
		}
	}
	if high >= 0 {
		unlisted = high // an unlisted high port, where one is left
	}
	if unlisted >= 0 {
		out = append(out, uint16(unlisted))
	}
	for i := range lo {
		if listed[i] && hi[i]-lo[i]+1 >= broadPorts && len(out) < maxPortReps {
			out = append(out, uint16(lo[i]+(hi[i]-lo[i])/2))
		}
	}
	if len(out) == 0 {
		out = append(out, 47123)
	}
	return out
}

// sportReps: a port in every stretch the rules distinguish, unlisted
// ones first (51789 when free). complete is false when there were more
// stretches than probes.
func (l *literals) sportReps(avoid uint16) (out []uint16, complete bool) {
	lo, hi, listed := portStretches(l.sports)
	pick := func(i int) uint16 {
		if lo[i] <= 51789 && 51789 <= hi[i] && !listed[i] {
			return 51789
		}
		p := lo[i] + (hi[i]-lo[i])/2
		if uint16(p) == avoid && hi[i] > lo[i] {
			p = lo[i]
		}
		return uint16(p)
	}
	for _, wantListed := range []bool{false, true} {
		for i := range lo {
			if listed[i] != wantListed {
				continue
			}
			if len(out) >= maxSportReps {
				return out, false
			}
			out = append(out, pick(i))
		}
	}
	return out, true
}

// u128 is an address as a 128-bit number (IPv4 in the low 32 bits).
type u128 struct{ hi, lo uint64 }

func toU128(a netip.Addr) u128 {
	b := a.As16()
	if a.Is4() {
		return u128{0, uint64(b[12])<<24 | uint64(b[13])<<16 | uint64(b[14])<<8 | uint64(b[15])}
	}
	var x u128
	for i := 0; i < 8; i++ {
		x.hi = x.hi<<8 | uint64(b[i])
		x.lo = x.lo<<8 | uint64(b[8+i])
	}
	return x
}

func fromU128(x u128, v4 bool) netip.Addr {
	if v4 {
		return netip.AddrFrom4([4]byte{byte(x.lo >> 24), byte(x.lo >> 16), byte(x.lo >> 8), byte(x.lo)})
	}
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[7-i] = byte(x.hi >> (8 * i))
		b[15-i] = byte(x.lo >> (8 * i))
	}
	return netip.AddrFrom16(b)
}

func (x u128) less(y u128) bool { return x.hi < y.hi || x.hi == y.hi && x.lo < y.lo }

func (x u128) add1() (u128, bool) {
	lo, c := bits.Add64(x.lo, 1, 0)
	hi, c2 := bits.Add64(x.hi, 0, c)
	return u128{hi, lo}, c2 != 0
}

func (x u128) sub(y u128) u128 {
	lo, b := bits.Sub64(x.lo, y.lo, 0)
	hi, _ := bits.Sub64(x.hi, y.hi, b)
	return u128{hi, lo}
}

func (x u128) half() u128 { return u128{x.hi >> 1, x.lo>>1 | x.hi<<63} }

func (x u128) plus(y u128) u128 {
	lo, c := bits.Add64(x.lo, y.lo, 0)
	hi, _ := bits.Add64(x.hi, y.hi, c)
	return u128{hi, lo}
}

// addrReps: a source address no rule lists (preferring documentation
// addresses), and one address in each broad listed stretch of the family.
func (l *literals) addrReps(family string, avoid netip.Addr) []netip.Addr {
	v4 := family == "ip"
	bitLen := 128
	if v4 {
		bitLen = 32
	}
	var rs []addrRange
	for _, r := range l.addrs {
		if r.lo.BitLen() == bitLen {
			rs = append(rs, r)
		}
	}
	// Stretch boundaries, as numbers; end is one past the family's top.
	type cut struct {
		x   u128
		end bool
	}
	top := u128{0, 1 << 32}
	if !v4 {
		top = u128{} // 2^128 wraps to 0: marked by end
	}
	cuts := []cut{{x: u128{}}, {x: top, end: true}}
	for _, r := range rs {
		cuts = append(cuts, cut{x: toU128(r.lo)})
		if n, overflow := toU128(r.hi).add1(); !overflow && (!v4 || n.less(top)) {
			cuts = append(cuts, cut{x: n})
		}
	}
	slices.SortFunc(cuts, func(a, b cut) int {
		switch {
		case a.end != b.end:
			if a.end {
				return 1
			}
			return -1
		case a.x.less(b.x):
			return -1
		case b.x.less(a.x):
			return 1
		}
		return 0
	})
	cuts = slices.CompactFunc(cuts, func(a, b cut) bool { return a == b })
	type span struct{ lo, hi u128 }
	spans := make([]span, 0, len(rs))
	for _, r := range rs {
		spans = append(spans, span{toU128(r.lo), toU128(r.hi)})
	}
	slices.SortFunc(spans, func(a, b span) int {
		switch {
		case a.lo.less(b.lo):
			return -1
		case b.lo.less(a.lo):
			return 1
		}
		return 0
	})
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 {
			next, overflow := merged[n-1].hi.add1()
			if overflow || !next.less(s.lo) {
				if merged[n-1].hi.less(s.hi) {
					merged[n-1].hi = s.hi
				}
				continue
			}
		}
		merged = append(merged, s)
	}
	covered := func(x u128) bool {
		i := sort.Search(len(merged), func(k int) bool { return !merged[k].hi.less(x) })
		return i < len(merged) && !x.less(merged[i].lo)
	}
	// broad: a stretch of 2^(bitLen-broadPrefix) addresses or more.
	broad := u128{}
	if shift := bitLen - broadPrefix; shift >= 64 {
		broad.hi = 1 << (shift - 64)
	} else {
		broad.lo = 1 << shift
	}
	candidates := candidates4
	if !v4 {
		candidates = candidates6
	}
	var out []netip.Addr
	for _, c := range candidates {
		a := netip.MustParseAddr(c)
		if a != avoid && !covered(toU128(a)) {
			out = append(out, a)
			break
		}
	}
	var broadReps []netip.Addr
	for i := 0; i+1 < len(cuts) && len(broadReps) < maxAddrReps; i++ {
		a := cuts[i].x
		var size u128
		if cuts[i+1].end {
			size = top.sub(a) // for IPv6 top is 0: 2^128 - a, modulo 2^128
		} else {
			size = cuts[i+1].x.sub(a)
		}
		wide := !size.less(broad) || (size == u128{} && !v4) // the whole IPv6 space
		cov := covered(a)
		switch {
		case !cov && len(out) == 0:
			out = append(out, fromU128(a.plus(size.half()), v4))
		case cov && wide:
			broadReps = append(broadReps, fromU128(a.plus(size.half()), v4))
		}
	}
	out = append(out, broadReps...)
	if len(out) == 0 {
		out = append(out, netip.MustParseAddr(candidates[0]))
	}
	return out
}

// Preferred source addresses: documentation and benchmark ranges first,
// then common private ranges.
var (
	candidates4 = []string{"203.0.113.77", "198.51.100.77", "192.0.2.77", "198.18.7.77", "100.64.7.77", "172.31.7.77", "10.77.7.77", "192.168.77.77"}
	candidates6 = []string{"2001:db8:77::77", "3fff:77::77", "2001:db8:ffff::77", "fd77::77"}
)

// named reports whether a rule names the interface, exactly or by a
// wildcard ("eth*" in nft, "eth+" in iptables).
func (l *literals) named(iface string) bool {
	if l.ifaces[iface] {
		return true
	}
	for n := range l.ifaces {
		if p, ok := strings.CutSuffix(n, "*"); ok && strings.HasPrefix(iface, p) {
			return true
		}
	}
	return false
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

// tcpFlagSets are the flags a new connection's first segment may carry: a
// plain SYN, and a SYN asking for ECN.
var tcpFlagSets = [][]string{{"syn"}, {"syn", "ece", "cwr"}}

// probes builds every probe of one family and protocol on iif to daddr (one
// of the host's addresses; the zero Addr: one no rule lists). complete is
// false when the source ports had to be sampled.
func (l *literals) probes(family, proto, iif string, daddr netip.Addr) (out []probe, complete bool) {
	if !daddr.IsValid() {
		daddr = l.addrReps(family, netip.Addr{})[0]
	}
	dports := l.dportReps()
	sports, complete := l.sportReps(dports[0])
	flags := [][]string{nil}
	if proto == "tcp" {
		flags = tcpFlagSets
	}
	for _, saddr := range l.addrReps(family, daddr) {
		for _, dp := range dports {
			for _, sp := range sports {
				for _, f := range flags {
					out = append(out, probe{family: family, proto: proto, iif: iif, dport: dp, sport: sp,
						saddr: saddr, daddr: daddr, tcpFlags: f})
				}
			}
		}
	}
	return out, complete
}
