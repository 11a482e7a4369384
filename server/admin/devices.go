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
