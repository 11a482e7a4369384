package ingest

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the ingest server's Prometheus metrics. The server keeps
// them whether or not anything scrapes them (Collectors registers them).
type Metrics struct {
	reports       *prometheus.CounterVec
	observations  *prometheus.CounterVec
	ingestSeconds prometheus.Histogram
	batchSize     prometheus.Histogram
	waiting       prometheus.Gauge
	storeErrors   *prometheus.CounterVec
	attestations  *prometheus.CounterVec
	enrollments   *prometheus.CounterVec
	renewals      *prometheus.CounterVec
	streamsClosed *prometheus.CounterVec
	connsRefused  prometheus.Counter
}

func newMetrics() *Metrics {
	return &Metrics{
		reports: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_reports_total",
			Help: "Reports received on evidence streams, by result: stored (and acked), overloaded (refused, retryable: Busy or the stream ended), deferred (dropped while the stream is Busy; the agent resends it), over_quota, failed."}, []string{"result"}),
		observations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_observations_total",
			Help: "Observations in stored reports: received, and new (not stored before: a resend after a lost ack is received again but not new)."}, []string{"kind"}),
		ingestSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "evident_report_ingest_seconds",
			Help: "Time to validate, store and score one report, after its admission.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "evident_report_observations",
			Help: "Observations per report.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000}}),
		waiting: prometheus.NewGauge(prometheus.GaugeOpts{Name: "evident_ingest_queue_waiting",
			Help: "Reports waiting for a slot to be stored (at most --queue-wait each)."}),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_store_errors_total",
			Help: "Store operations of the ingest path that failed, by operation."}, []string{"op"}),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_attestations_total",
			Help: "TPM attestations received, by verdict: verified or refused."}, []string{"verdict"}),
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_enrollments_total",
			Help: "Devices enrolled."}, []string{"tpm"}),
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_certificate_renewals_total",
			Help: "Device certificate renewals: issued, or refused (a TPM proof that did not verify)."}, []string{"result"}),
		streamsClosed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "evident_streams_closed_total",
			Help: "Evidence streams the server closed because the device's credentials no longer hold: revoked (or replaced by a renewal), expired."}, []string{"reason"}),
		connsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "evident_connections_refused_total",
			Help: "Connections closed on accept: too many from one source still in their TLS handshake, or the descriptor limit reached."}),
	}
}

// Collectors are the ingest server's metrics, with the gauges it reads when
// scraped (streams open, reports being stored), for a Prometheus registry.
func (s *Server) Collectors() []prometheus.Collector {
	m := s.metrics()
	return []prometheus.Collector{m.reports, m.observations, m.ingestSeconds, m.batchSize, m.waiting, m.storeErrors,
		m.attestations, m.enrollments, m.renewals, m.streamsClosed, m.connsRefused,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "evident_streams_open",
			Help: "Evidence streams open on this replica."}, func() float64 { return float64(s.streams.count()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "evident_ingest_in_flight",
			Help: "Reports being stored and scored now (at most --max-in-flight)."}, func() float64 { return float64(s.inFlight()) }),
	}
}

// metrics returns the server's metrics, made at the first call (once: it
// is called on every report).
func (s *Server) metrics() *Metrics {
	s.metricsOnce.Do(func() { s.m = newMetrics() })
	return s.m
}

func (s *Server) inFlight() int {
	s.admitOnce.Do(s.initSlots)
	return len(s.slots)
}

func (r *streamRegistry) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.streams {
		n += len(m)
	}
	return n
}
