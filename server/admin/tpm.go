package admin

import (
	"context"
	"strings"
	"time"
)

// AllowTPMChange lets a device's next enrollment change its TPM (EK: new
// mainboard or TPM cleared) or attestation key (AK: agent reinstalled), for
// valid (more than zero, at most MaxTPMChange). It returns when the
// allowance lapses.
func (s *Service) AllowTPMChange(ctx context.Context, actor, deviceID string, valid time.Duration) (time.Time, error) {
	if err := checkActor(actor); err != nil {
		return time.Time{}, err
	}
	deviceID = strings.TrimSpace(deviceID)
	request := detail("device_id", deviceID, "for", valid.String())
	var err error
	if valid <= 0 || valid > MaxTPMChange {
		err = refuse("a TPM-change allowance must last more than 0 and at most 7 days (168h), not %s", valid)
	} else {
		err = s.checkDevice(ctx, deviceID)
	}
	if err != nil {
		return time.Time{}, s.refused(ctx, actor, ActionTPMChange, request, err)
	}
	until := s.now().UTC().Add(valid)
	if err := s.st.AllowTPMChange(ctx, deviceID, until); err != nil {
		return time.Time{}, err
	}
	return until, s.audit(ctx, actor, ActionTPMChange, detail("device_id", deviceID, "until", rfc3339(until)))
}
