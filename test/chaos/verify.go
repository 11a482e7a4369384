//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/outbox"
	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// deviceResult is what the end of a run found for one agent.
type deviceResult struct {
	agent      int
	device     string
	persisted  uint64 // seqs 1..persisted issued by the agent's outbox
	dropped    uint64 // dropped by the outbox bound (reported as gap records)
	stored     int    // rows on the server
	distinct   int    // distinct seqs among them
	lost       int    // seqs issued, neither stored nor inside a dropped span
	extra      int    // stored seqs the agent never issued
	unrecorded int    // cycles the agent logged as not stored (disk full)
	reported   int    // cycles the server's not_recorded gap records count
	gapRecords int
}

func (d deviceResult) duplicated() int { return d.stored - d.distinct }

// add sums e into d (the totals line).
func (d *deviceResult) add(e deviceResult) {
	d.persisted, d.dropped = d.persisted+e.persisted, d.dropped+e.dropped
	d.stored, d.distinct, d.lost, d.extra = d.stored+e.stored, d.distinct+e.distinct, d.lost+e.lost, d.extra+e.extra
	d.unrecorded, d.reported, d.gapRecords = d.unrecorded+e.unrecorded, d.reported+e.reported, d.gapRecords+e.gapRecords
}

// drain stops the agents, delivers what each still holds with run --once
// straight to the server, and stops the server.
func (r *rig) drain() error {
	r.proxy.Cut()
	for _, a := range r.agents {
		if err := a.p.stop(); err != nil {
			return fmt.Errorf("agent %d: %w", a.i, err)
		}
	}
	for _, a := range r.agents {
		logPath := filepath.Join(r.root, fmt.Sprintf("agent-%d.drain.log", a.i))
		p, err := start(append(r.clockEnv(), fmt.Sprintf("EVIDENT_OUTBOX_MAX_BYTES=%d", agentOutboxMax)), logPath, r.agentBin,
			"run", "--once", "--data-dir", a.dir, "--server", r.addr, "--collectors", "osinfo", "--once-timeout", "2m",
			"--machine-id", fmt.Sprintf("chaos-%d", a.i))
		if err != nil {
			return err
		}
		a.logs = append(a.logs, logPath)
		select {
		case <-p.done:
		case <-time.After(3 * time.Minute):
			p.kill()
		}
		if p.err != nil {
			return fmt.Errorf("agent %d did not deliver everything: %v\n%s", a.i, p.err, logTail(logPath))
		}
	}
	return r.srv.stop()
}

var (
	notStoredLine = regexp.MustCompile(`collection failed.*no space left on device`)
	collectedLine = regexp.MustCompile(`msg=collected .*first_seq=(\d+) last_seq=(\d+)`)
)

// checkIssued reads the seq range of every cycle the agent logged as
// stored: the ranges must not overlap (a seq handed out twice, say by an
// outbox that rolled back a write it had already numbered, would make the
// server ignore the second observation as a resend) and must cover
// 1..persisted. It is called only when the outbox dropped nothing: a drop
// adds a gap record no cycle logs.
func checkIssued(logs []string, persisted uint64) error {
	owner := make([]int, persisted+1) // which cycle (1-based) issued each seq
	cycle := 0
	for _, l := range logs {
		var bad error
		err := eachLine(l, func(line []byte) {
			m := collectedLine.FindSubmatch(line)
			if m == nil || bad != nil {
				return
			}
			cycle++
			first, _ := strconv.ParseUint(string(m[1]), 10, 64)
			last, _ := strconv.ParseUint(string(m[2]), 10, 64)
			if first == 0 || last < first || last > persisted {
				bad = fmt.Errorf("%s: cycle seqs %d..%d outside 1..%d", filepath.Base(l), first, last, persisted)
				return
			}
			for seq := first; seq <= last; seq++ {
				if owner[seq] != 0 {
					bad = fmt.Errorf("%s: seq %d issued twice (cycles %d and %d)", filepath.Base(l), seq, owner[seq], cycle)
					return
				}
				owner[seq] = cycle
			}
		})
		if err != nil {
			return err
		}
		if bad != nil {
			return bad
		}
	}
	missing := 0
	for seq := uint64(1); seq <= persisted; seq++ {
		if owner[seq] == 0 {
			missing++
		}
	}
	if missing > 0 {
		return fmt.Errorf("%d of seqs 1..%d were issued by no logged cycle", missing, persisted)
	}
	return nil
}

// check compares each agent's outbox with the server's store.
func (r *rig) check() ([]deviceResult, error) {
	st, err := sqlite.Open(filepath.Join(r.srvDir, "evident.db"), true)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	var out []deviceResult
	for _, a := range r.agents {
		d := deviceResult{agent: a.i, device: a.device}
		ob, err := outbox.Open(agent.OutboxPath(a.dir), outbox.Options{})
		if err != nil {
			return nil, fmt.Errorf("agent %d outbox: %w", a.i, err)
		}
		s, err := ob.Stats()
		ob.Close()
		if err != nil {
			return nil, err
		}
		d.persisted, d.dropped = s.NextSeq-1, s.Dropped
		if s.Depth != 0 || s.LastAcked != d.persisted {
			return nil, fmt.Errorf("agent %d outbox not drained: %+v", a.i, s)
		}
		seen := make([]uint8, d.persisted+1)
		var spans [][2]uint64
		err = st.ObservationsForExport(context.Background(), a.device, time.Unix(0, 0), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
			func(o store.ChainedObservation) error {
				d.stored++
				if o.Seq == 0 || o.Seq > d.persisted {
					d.extra++
					return nil
				}
				if seen[o.Seq] == 0 {
					d.distinct++
				}
				seen[o.Seq]++
				if o.Collector != "agent.outbox" {
					return nil
				}
				var g struct {
					Event             string `json:"event"`
					Cycles            int    `json:"cycles"`
					FirstSeq, LastSeq uint64
				}
				if err := json.Unmarshal(o.Payload, &g); err != nil {
					return fmt.Errorf("gap record seq %d: %w", o.Seq, err)
				}
				switch g.Event {
				case "not_recorded":
					d.gapRecords++
					d.reported += g.Cycles
				case "dropped":
					d.gapRecords++
					spans = append(spans, [2]uint64{g.FirstSeq, g.LastSeq})
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
		for seq := uint64(1); seq <= d.persisted; seq++ {
			if seen[seq] == 0 && !inSpans(seq, spans) {
				d.lost++
			}
		}
		if d.dropped == 0 {
			if err := checkIssued(a.logs, d.persisted); err != nil {
				return nil, fmt.Errorf("agent %d: %w", a.i, err)
			}
		}
		for _, l := range a.logs {
			n, err := countLines(l, notStoredLine)
			if err != nil {
				return nil, err
			}
			d.unrecorded += n
		}
		out = append(out, d)
	}
	return out, nil
}

func inSpans(seq uint64, spans [][2]uint64) bool {
	for _, s := range spans {
		if seq >= s[0] && seq <= s[1] {
			return true
		}
	}
	return false
}

func countLines(path string, re *regexp.Regexp) (int, error) {
	n := 0
	err := eachLine(path, func(line []byte) {
		if re.Match(line) {
			n++
		}
	})
	return n, err
}

// logFollower reads what is appended to a log after it was opened.
type logFollower struct {
	f       *os.File
	partial []byte // an unfinished last line
}

// followLog opens path positioned at its end.
func followLog(path string) (*logFollower, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		f.Close()
		return nil, err
	}
	return &logFollower{f: f}, nil
}

// saw reads the lines appended since the last call and reports whether
// one matches re.
func (l *logFollower) saw(re *regexp.Regexp) bool {
	b, _ := io.ReadAll(l.f)
	b = append(l.partial, b...)
	i := bytes.LastIndexByte(b, '\n')
	l.partial = append([]byte(nil), b[i+1:]...)
	return i >= 0 && re.Match(b[:i])
}

func (l *logFollower) Close() error { return l.f.Close() }

// eachLine calls fn with each line of the file at path.
func eachLine(path string, fn func(line []byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		fn(sc.Bytes())
	}
	return sc.Err()
}

var resentRe = regexp.MustCompile(`observations=(\d+) new=(\d+)`)

// resent counts the observations the server received again and ignored
// (lost acks, reconnects): the duplicate path was taken, not avoided.
func (r *rig) resent() (int, error) {
	n := 0
	err := eachLine(filepath.Join(r.root, "server.log"), func(line []byte) {
		if m := resentRe.FindSubmatch(line); m != nil {
			total, _ := strconv.Atoi(string(m[1]))
			fresh, _ := strconv.Atoi(string(m[2]))
			n += total - fresh
		}
	})
	return n, err
}

// verifyBundle exports a signed bundle of everything and verifies it, its
// hash chains included, against the server's CA.
func (r *rig) verifyBundle() (string, error) {
	b, err := os.ReadFile(filepath.Join(r.srvDir, "pki", "ca.crt"))
	if err != nil {
		return "", err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return "", fmt.Errorf("pki/ca.crt is not PEM")
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return "", err
	}
	bundle := filepath.Join(r.root, "bundle.tar")
	if _, err := runCmd(5*time.Minute, r.clockEnv(), r.serverBin, "export", "bundle", "--data-dir", r.srvDir, "--out", bundle); err != nil {
		return "", err
	}
	out, err := runCmd(5*time.Minute, r.clockEnv(), r.serverBin, "verify", "--ca-fingerprint", pki.Fingerprint(ca.Raw), bundle)
	if err != nil {
		return "", err
	}
	os.Remove(bundle)
	return strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]), nil
}
