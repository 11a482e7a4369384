package server

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/evident-dev/evident/internal/clock"
	"github.com/evident-dev/evident/server/store"
)

// certExpiries counts, at each scrape, the devices whose certificate has
// expired or expires within 7 or 30 days: a fleet that stops renewing
// shows here weeks before it goes silent.
type certExpiries struct {
	st   store.Store
	desc *prometheus.Desc
}

func newCertExpiries(st store.Store) *certExpiries {
	return &certExpiries{st: st, desc: prometheus.NewDesc("evident_device_certificates_expiring",
		"Devices (not revoked) whose certificate expires within the window: expired, 7d or 30d (each includes the shorter ones).", []string{"within"}, nil)}
}

func (c *certExpiries) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certExpiries) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	now := clock.Now()
	for _, w := range []struct {
		label string
		d     time.Duration
	}{{"expired", 0}, {"7d", 7 * 24 * time.Hour}, {"30d", 30 * 24 * time.Hour}} {
		n, err := c.st.CertificatesExpiring(ctx, now.Add(w.d))
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.desc, err)
			return
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), w.label)
	}
}
