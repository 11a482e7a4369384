//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/collectors/all"
	"github.com/evident-dev/evident/platform/snapshot"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// cycle is one recorded host's collection cycle: every collector run once on
// its snapshot, each observation encoded as the agent's outbox holds it (the
// protobuf Observation without its seq). Simulated devices replay it.
type cycle struct {
	Host   string   `json:"host"`
	GOOS   string   `json:"goos"`
	GOARCH string   `json:"goarch"`
	Obs    [][]byte `json:"obs"`
}

// loadCycles replays the host snapshot at dir, or every snapshot directly
// under it, through the agent's collectors.
func loadCycles(dir string) ([]cycle, error) {
	dirs := []string{dir}
	if _, err := os.Stat(filepath.Join(dir, "manifest.json")); errors.Is(err, os.ErrNotExist) {
		manifests, _ := filepath.Glob(filepath.Join(dir, "*", "manifest.json"))
		if len(manifests) == 0 {
			return nil, fmt.Errorf("-snapshots %s: no host snapshot there (a directory holding manifest.json, or directories that do; run from the repository root or pass -snapshots)", dir)
		}
		dirs = dirs[:0]
		for _, m := range manifests {
			dirs = append(dirs, filepath.Dir(m))
		}
		sort.Strings(dirs)
	}
	reg, err := collectors.NewRegistry(all.Default()...)
	if err != nil {
		return nil, err
	}
	var out []cycle
	for _, d := range dirs {
		host, err := snapshot.Open(d)
		if err != nil {
			return nil, fmt.Errorf("host snapshot %s: %w", d, err)
		}
		c := cycle{Host: filepath.Base(d), GOOS: host.GOOS(), GOARCH: host.Manifest().GOARCH}
		for _, o := range reg.RunAll(context.Background(), host, time.Minute, host.Now) {
			b, err := agent.EncodeObservation(o)
			if err != nil {
				return nil, fmt.Errorf("host snapshot %s, collector %s: %w", d, o.Collector, err)
			}
			c.Obs = append(c.Obs, b)
		}
		out = append(out, c)
	}
	return out, nil
}

// template is a cycle decoded once per worker; report stamps a copy.
type template struct {
	host, goos, goarch string
	obs                []*evidentv1.Observation
}

func decodeCycles(cs []cycle) ([]template, error) {
	out := make([]template, 0, len(cs))
	for _, c := range cs {
		t := template{host: c.Host, goos: c.GOOS, goarch: c.GOARCH}
		for _, b := range c.Obs {
			o := &evidentv1.Observation{}
			if err := proto.Unmarshal(b, o); err != nil {
				return nil, fmt.Errorf("cycle of %s: %w", c.Host, err)
			}
			t.obs = append(t.obs, o)
		}
		if len(t.obs) == 0 {
			return nil, fmt.Errorf("cycle of %s holds no observation", c.Host)
		}
		out = append(out, t)
	}
	if len(out) == 0 {
		return nil, errors.New("no collection cycle to replay")
	}
	return out, nil
}

// report is one collection cycle with fresh seqs from first on and a fresh
// collected_at, as the agent's uplink sends it.
func (t template) report(first uint64, now time.Time) *evidentv1.Report {
	r := &evidentv1.Report{Observations: make([]*evidentv1.Observation, len(t.obs))}
	at := timestamppb.New(now)
	for i, o := range t.obs {
		c := proto.Clone(o).(*evidentv1.Observation)
		c.Seq, c.CollectedAt = first+uint64(i), at
		r.Observations[i] = c
	}
	return r
}
