// Package devices holds the enrollment rule that links a new device to the
// machine's earlier ones. A store only writes the device as linked here.
//
// Every enrollment is a new device with its own id and seq space. It is
// linked (PreviousID, Reenrolled) to the newest earlier device with the
// same TPM endorsement key, or else with the same machine id, so its
// history is recognised; it never takes that device's identity, because
// the machine id is asserted by the client and must never grant another
// device's evidence. (The store keeps one invariant of its own: a TPM
// names one live device, so enrolling with an EK supersedes every earlier
// device with it, in the enrollment's transaction.)
package devices

import (
	"context"
	"errors"

	"github.com/evident-dev/evident/server/store"
)

// Store is what enrollment reads and writes.
type Store interface {
	Device(ctx context.Context, id string) (store.Device, error)
	DeviceByEK(ctx context.Context, ekHash []byte) (string, store.DeviceTPM, error)
	DeviceByMachineID(ctx context.Context, machineID string) (store.Device, error)
	EnrollDevice(ctx context.Context, d store.Device) (store.Device, error)
}

// Link returns d linked to the machine's newest earlier device, if any; a
// PreviousID or Reenrolled the caller set is replaced.
func Link(ctx context.Context, st Store, d store.Device) (store.Device, error) {
	d.PreviousID, d.Reenrolled = "", 0
	var prev store.Device
	var err error
	if d.TPM != nil {
		// The TPM names the machine better than any asserted id.
		var id string
		id, _, err = st.DeviceByEK(ctx, d.TPM.EKHash)
		if err == nil {
			prev, err = st.Device(ctx, id)
		}
	}
	if d.TPM == nil || errors.Is(err, store.ErrNotFound) {
		prev, err = st.DeviceByMachineID(ctx, d.MachineID)
	}
	switch {
	case err == nil:
		d.PreviousID, d.Reenrolled = prev.ID, prev.Reenrolled+1
	case !errors.Is(err, store.ErrNotFound):
		return d, err
	}
	return d, nil
}

// Enroll links d and stores it.
func Enroll(ctx context.Context, st Store, d store.Device) (store.Device, error) {
	d, err := Link(ctx, st, d)
	if err != nil {
		return d, err
	}
	return st.EnrollDevice(ctx, d)
}
