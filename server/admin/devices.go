package admin

import (
	"context"
	"errors"
	"strings"

	"github.com/evident-dev/evident/server/store"
)

// RevokeDevice revokes a device's credentials (retire: it left the fleet, a
// disposed or returned machine, rather than a lost or stolen one). Every
// replica closes the device's open streams at its next credential check
// (within ingest.DefaultCredentialCheck) and refuses it from then on; its
// evidence stays. A reason is required: it is what the device, the audit log
// and the reports show. A device already revoked keeps its first
// revocation, and the second is refused.
func (s *Service) RevokeDevice(ctx context.Context, actor, deviceID, reason string, retire bool) error {
	if err := checkActor(actor); err != nil {
		return err
	}
	action := ActionDeviceRevoke
	if retire {
		action = ActionDeviceRetire
	}
	deviceID, reason = strings.TrimSpace(deviceID), strings.TrimSpace(reason)
	request := detail("device_id", clip(deviceID, MaxID), "reason", clip(reason, MaxText))
	err := s.checkDevice(ctx, deviceID)
	if err == nil {
		switch d, derr := s.st.Device(ctx, deviceID); {
		case derr != nil:
			err = derr
		case d.RevokedAt != nil:
			err = refuse("device %s was already %s on %s (%s)", deviceID, revokedWord(d.Retired), rfc3339(*d.RevokedAt), d.RevokeReason)
		case reason == "":
			err = refuse("a reason is required (--reason): it is shown to the device, in the audit log and in reports")
		default:
			err = checkLen("reason", reason, MaxText)
		}
	}
	if err != nil {
		return s.refused(ctx, actor, action, request, err)
	}
	if err := s.st.RevokeDevice(ctx, deviceID, s.now().UTC(), reason, retire); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return s.refused(ctx, actor, action, request, notFound("no device %q", deviceID))
		}
		return err
	}
	return s.audit(ctx, actor, action, request)
}

func revokedWord(retired bool) string {
	if retired {
		return "retired"
	}
	return "revoked"
}

// maxCollectors bounds the collectors one collect-now request names.
const maxCollectors = 32

// RequestCollection asks a device to run its collectors now (all when
// collectors is empty): the replica holding the device's stream sends the
// request within a second, and the new observations arrive as soon as the
// agent has collected. It returns the request's id.
func (s *Service) RequestCollection(ctx context.Context, actor, deviceID string, collectors []string) (int64, error) {
	if err := checkActor(actor); err != nil {
		return 0, err
	}
	deviceID = strings.TrimSpace(deviceID)
	request := detail("device_id", clip(deviceID, MaxID), "collectors", clip(strings.Join(collectors, ","), MaxText))
	err := s.checkDevice(ctx, deviceID)
	if err == nil && len(collectors) > maxCollectors {
		err = refuse("at most %d collectors in one request", maxCollectors)
	}
	for _, c := range collectors {
		if err == nil && !validCollector(c) {
			err = refuse("%q is not a collector name (letters, digits, '.', '_' and '-', at most 64)", clip(c, 64))
		}
	}
	if err == nil {
		if d, derr := s.st.Device(ctx, deviceID); derr != nil {
			err = derr
		} else if d.RevokedAt != nil {
			err = refuse("device %s was %s on %s: it no longer connects", deviceID, revokedWord(d.Retired), rfc3339(*d.RevokedAt))
		}
	}
	if err != nil {
		return 0, s.refused(ctx, actor, ActionDeviceCollect, request, err)
	}
	id, err := s.st.RequestCollection(ctx, store.CollectRequest{DeviceID: deviceID, Collectors: collectors, RequestedAt: s.now().UTC(), RequestedBy: actor})
	if err != nil {
		return 0, err
	}
	return id, s.audit(ctx, actor, ActionDeviceCollect, request+" request="+itoa(id))
}

func validCollector(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for _, r := range c {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}
