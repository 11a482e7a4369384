package ingest

import (
	"bytes"
	"context"
	"time"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
)

// Command pacing: each replica looks for requests every CommandCheck; a
// request no replica could send within commandTTL (its device offline) is
// left unsent, as a record of the request.
const (
	DefaultCommandCheck = time.Second
	commandTTL          = 10 * time.Minute
)

// WatchCommands sends, every interval (default DefaultCommandCheck), a
// changed CA trust bundle to every open stream, and the collect-now
// requests of the devices whose stream is open on this replica: whichever
// replica holds the stream claims the request in the store and sends it,
// so a request made through any replica, the CLI or the API reaches the
// device. It returns when ctx ends.
func (s *Server) WatchCommands(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultCommandCheck
	}
	var bundle []byte
	if s.Authority != nil {
		bundle = s.ca().PEM()
	}
	s.poll(ctx, every, "reading collect-now requests", func(ctx context.Context, now time.Time) error {
		if s.Authority != nil {
			// A CA rollover changed the trust bundle: every open stream
			// gets the new one (streams opened later get it after Hello).
			if b := s.ca().PEM(); !bytes.Equal(b, bundle) {
				n := s.streams.broadcast(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_TrustBundle{TrustBundle: &evidentv1.TrustBundle{CaBundle: b}}})
				s.Log.Info("CA trust bundle changed; sent to the open streams", "streams", n, "cas", bytes.Count(b, []byte("BEGIN CERTIFICATE")))
				bundle = b
			}
		}
		reqs, err := s.Store.PendingCollections(ctx, now.Add(-commandTTL))
		if err != nil {
			return err
		}
		for _, r := range reqs {
			out := s.streams.sender(r.DeviceID)
			if out == nil {
				continue // another replica's, or the device is offline
			}
			if ok, err := s.Store.MarkCollectionSent(ctx, r.ID, now); err != nil || !ok {
				continue
			}
			// On its own goroutine: a device that stopped reading must not
			// hold up the other requests.
			go func() {
				err := out.send(&evidentv1.ServerMessage{Msg: &evidentv1.ServerMessage_CollectNow{CollectNow: &evidentv1.CollectNow{Collectors: r.Collectors}}})
				s.Log.Info("collect-now sent", "device", r.DeviceID, "request", r.ID, "collectors", r.Collectors, "requested_by", r.RequestedBy, "err", err)
			}()
		}
		return nil
	})
}

// configFor is the Config the policy sets for a device, sent after every
// Hello, so a policy the server was restarted with reaches running agents
// as they reconnect. Without a schedule in the policy it is empty: the
// agent goes back to its own settings.
func (s *Server) configFor(d store.Device) *evidentv1.Config {
	if s.Policy == nil || s.Policy.Collection == nil {
		return &evidentv1.Config{}
	}
	sch := s.Policy.ScheduleFor(controls.FactsOf(d))
	cfg := &evidentv1.Config{IntervalSeconds: seconds(sch.Interval.Duration)}
	for c, iv := range sch.Collectors {
		if cfg.CollectorIntervalSeconds == nil {
			cfg.CollectorIntervalSeconds = map[string]uint32{}
		}
		cfg.CollectorIntervalSeconds[c] = seconds(iv.Duration)
	}
	return cfg
}

func seconds(d time.Duration) uint32 { return uint32((d + time.Second - 1) / time.Second) }
