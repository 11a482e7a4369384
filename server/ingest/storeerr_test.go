package ingest

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// TestStoreErrorCauseLogged: when storing a report fails, the agent gets a
// retryable status without details, and the server's log says why.
func TestStoreErrorCauseLogged(t *testing.T) {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "evident.db"), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.EnrollDevice(context.Background(), store.Device{ID: "dev-1", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	s := &Server{Store: st, Policy: controls.Default(), Log: slog.New(slog.NewTextHandler(&logs, nil))}
	st.Close() // what a lost database looks like from here
	_, err = s.ingest(context.Background(), "dev-1", []*evidentv1.Observation{{Seq: 1, Collector: "osinfo",
		CollectedAt: timestamppb.Now(), Status: evidentv1.Observation_STATUS_OK, PayloadJson: []byte(`{}`)}}, &time.Time{})
	if status.Code(err) != codes.Unavailable || strings.Contains(err.Error(), "closed") {
		t.Fatalf("ingest on a closed store = %v; want Unavailable without the cause", err)
	}
	if !strings.Contains(logs.String(), "storing a report failed") || !strings.Contains(logs.String(), "closed") {
		t.Errorf("the log does not say why:\n%s", logs.String())
	}
}
