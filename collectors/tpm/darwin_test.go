package tpm

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestCollectDarwin(t *testing.T) {
	h := platformtest.Replay{Live: &platform.Live{Root: t.TempDir()}, OS: "darwin"}
	res, err := New().Collect(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if p := res.Payload.(Payload); p.Present || p.NotApplicable == "" || len(p.Devices) != 0 || len(res.Sources) != 1 || res.Sources[0].Excerpt == "" {
		t.Errorf("got %+v %+v", p, res.Sources)
	}
	if obs := collectors.Run(context.Background(), New(), h, time.Second, time.Now); obs.Status != collectors.StatusOK || !strings.Contains(string(obs.Payload), `"present":false,"not_applicable":"Macs have no TPM`) {
		t.Errorf("observation %+v", obs)
	}
}
