package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"

	"github.com/evident-dev/evident/internal/atomicfile"
	"github.com/evident-dev/evident/internal/ops"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// agentMetrics are what a collection cycle records for /metrics; the rest
// is read from the outbox, the uplink and the identity at each scrape.
type agentMetrics struct {
	runs       *prometheus.CounterVec
	seconds    *prometheus.GaugeVec
	unrecorded prometheus.Counter
}

func newAgentMetrics() *agentMetrics {
	return &agentMetrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_agent_collector_runs_total",
			Help: "Collector runs, by collector and status (ok, error, unsupported)."}, []string{"collector", "status"}),
		seconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "evident_agent_collector_duration_seconds",
			Help: "How long each collector's latest run took."}, []string{"collector"}),
		unrecorded: prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_agent_cycles_unrecorded_total",
			Help: "Collection cycles the outbox could not store (disk full, I/O error); the next stored cycle reports them to the server as a gap."}),
	}
}

// collectors are the agent's metrics for a registry.
func (a *Agent) collectors() []prometheus.Collector {
	stat := func(f func(s Status) float64) func() float64 {
		return func() float64 { return f(a.Status()) }
	}
	unix := func(t time.Time) float64 {
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	return []prometheus.Collector{a.metrics.runs, a.metrics.seconds, a.metrics.unrecorded,
		gauge("evident_agent_outbox_depth", "Observations in the outbox not yet acknowledged by the server.", stat(func(s Status) float64 { return float64(s.Outbox.Depth) })),
		gauge("evident_agent_outbox_bytes", "Bytes of the observations in the outbox.", stat(func(s Status) float64 { return float64(s.Outbox.Bytes) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "evident_agent_outbox_dropped_total",
			Help: "Observations dropped to keep the outbox within its bound (each drop is itself recorded as evidence)."},
			stat(func(s Status) float64 { return float64(s.Outbox.Dropped) })),
		gauge("evident_agent_oldest_unacked_age_seconds", "Age of the oldest observation the server has not acknowledged (0 when none).", a.oldestUnackedAge),
		gauge("evident_agent_last_ack_timestamp_seconds", "When the server last acknowledged observations (Unix time; 0: not since start).", stat(func(s Status) float64 { return unix(s.Uplink.LastAckAt) })),
		gauge("evident_agent_stream_connected", "1 while the evidence stream is connected.", stat(func(s Status) float64 {
			if s.Uplink.Connected {
				return 1
			}
			return 0
		})),
		gauge("evident_agent_certificate_expiry_timestamp_seconds", "When the device certificate expires (Unix time); it renews at two thirds of its lifetime.",
			stat(func(s Status) float64 { return unix(s.CertExpires) })),
	}
}

// oldestUnackedAge reads the collection time of the first observation
// waiting in the outbox.
func (a *Agent) oldestUnackedAge() float64 {
	st, err := a.outbox.Stats()
	if err != nil || st.Depth == 0 {
		return 0
	}
	entries, err := a.outbox.Pending(st.LastAcked, 1<<20, 1)
	if err != nil || len(entries) == 0 {
		return 0
	}
	var o evidentv1.Observation
	if proto.Unmarshal(entries[0].Data, &o) != nil || !o.GetCollectedAt().IsValid() {
		return 0
	}
	return max(a.clock.Now().Sub(o.GetCollectedAt().AsTime()).Seconds(), 0)
}

// serveMetrics serves the agent's metrics, /healthz and /readyz (ready
// while the evidence stream is connected) on cfg.MetricsListen, a loopback
// address, and writes the URL to DATA_DIR/metrics.url.
func (a *Agent) serveMetrics(ctx context.Context) (stop func(), err error) {
	lis, err := net.Listen("tcp", a.cfg.MetricsListen)
	if err != nil {
		return nil, fmt.Errorf("metrics listen: %w", err)
	}
	if ip := lis.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		lis.Close()
		return nil, fmt.Errorf("metrics listen %q: served on a loopback address only", a.cfg.MetricsListen)
	}
	reg := ops.NewRegistry("evident-agent", a.cfg.Version)
	reg.MustRegister(a.collectors()...)
	stop = ops.Serve(ctx, lis, reg, func(context.Context) error {
		if err := a.id.Expired(a.clock.Now()); err != nil {
			return err
		}
		if s := a.up.State(); !s.Connected {
			return errors.New("evidence stream not connected: " + s.LastError)
		}
		return nil
	}, a.cfg.Log)
	url := "http://" + lis.Addr().String()
	if err := atomicfile.WriteFile(filepath.Join(a.cfg.DataDir, "metrics.url"), []byte(url+"\n"), 0o644); err != nil {
		stop()
		return nil, err
	}
	a.cfg.Log.Info("metrics served", "url", url+"/metrics")
	return stop, nil
}
