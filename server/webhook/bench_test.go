package webhook_test

import (
	"bytes"
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/webhook"
)

// BenchmarkTransition: what writing the alert adds to recording a
// transition (every evaluation here turns a control fail or back), alerting
// off and on, on SQLite on disk.
func BenchmarkTransition(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "alerts-off"
		if on {
			name = "alerts-on"
		}
		b.Run(name, func(b *testing.B) {
			st, err := sqlite.Open(filepath.Join(b.TempDir(), "evident.db"), false)
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			if on {
				st.EnableAlerts()
			}
			ctx := context.Background()
			if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-1", MachineID: "m1", EnrolledAt: t0}); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := range b.N {
				status := []string{store.Fail, store.Pass}[i%2]
				next := []store.ControlState{{ControlID: "DC-FW-01", Status: status, Reason: "r"}, {ControlID: "DC-ENC-01", Status: store.Pass, Reason: "r"}}
				if err := states.Record(ctx, st, "dev-1", next, nil, t0.Add(time.Duration(i)*time.Second)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDelivery: alerts delivered per second to a receiver on loopback
// (each a signed POST, then its record in the store), beside the same POSTs
// sent bare: the raw limit.
func BenchmarkDelivery(b *testing.B) {
	rcv := newReceiver(b)
	b.Run("raw-post", func(b *testing.B) {
		body := []byte(`{"id":1,"event":"control.fail"}`)
		for range b.N {
			resp, err := http.Post(rcv.srv.URL, "application/json", bytes.NewReader(body))
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "posts/s")
	})
	b.Run("dispatcher", func(b *testing.B) {
		st, err := sqlite.Open(filepath.Join(b.TempDir(), "evident.db"), false)
		if err != nil {
			b.Fatal(err)
		}
		defer st.Close()
		st.EnableAlerts()
		ctx := context.Background()
		if _, err := st.EnrollDevice(ctx, store.Device{ID: "dev-1", Hostname: "h", MachineID: "m1", EnrolledAt: t0}); err != nil {
			b.Fatal(err)
		}
		for i := range b.N {
			status := []string{store.Fail, store.Pass}[i%2]
			if err := states.Record(ctx, st, "dev-1", []store.ControlState{{ControlID: "DC-FW-01", Status: status}}, nil, t0.Add(time.Duration(i)*time.Second)); err != nil {
				b.Fatal(err)
			}
		}
		cfg := webhook.Config{Endpoints: []webhook.Endpoint{{Name: "ops", URL: rcv.srv.URL, Secret: secret}}}
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		d := webhook.New(st, cfg)
		b.ResetTimer()
		sent := 0
		for sent < (b.N+1)/2 { // every other record turned the control fail
			n, err := d.Round(ctx, t0.Add(time.Duration(b.N+1)*time.Second))
			if err != nil {
				b.Fatal(err)
			}
			if n == 0 {
				b.Fatalf("%d of %d delivered, then nothing", sent, (b.N+1)/2)
			}
			sent += n
		}
		b.ReportMetric(float64(sent)/b.Elapsed().Seconds(), "alerts/s")
	})
}
