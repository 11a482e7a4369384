package tpmtest

import (
	"testing"

	"github.com/google/go-attestation/attest"
)

func TestRecordedEventLogsParse(t *testing.T) {
	tests := []struct {
		name       string
		secureBoot bool
	}{
		{SecureBootLog, true},
		{NoSecureBootLog, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			el, err := attest.ParseEventLog(RecordedEventLog(t, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			sb, err := attest.ParseSecurebootState(el.Events(attest.HashSHA256))
			if err != nil {
				t.Fatal(err)
			}
			if sb.Enabled != tc.secureBoot {
				t.Errorf("Secure Boot enabled = %v, want %v", sb.Enabled, tc.secureBoot)
			}
		})
	}
}
