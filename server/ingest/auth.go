package ingest

import (
	"context"
	"errors"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
)

type deviceKey struct{}

// caller is who an authenticated call comes from.
type caller struct {
	id string
	// serial is the serial of the certificate it presented, and notBefore
	// and notAfter its validity.
	serial              string
	notBefore, notAfter time.Time
	// dev is the device as authentication read it (handlers use it
	// rather than reading it again).
	dev store.Device
}

// DeviceFromContext returns the authenticated device id of a call.
func DeviceFromContext(ctx context.Context) (string, bool) {
	c, ok := ctx.Value(deviceKey{}).(caller)
	return c.id, ok
}

func callerFromContext(ctx context.Context) (caller, bool) {
	c, ok := ctx.Value(deviceKey{}).(caller)
	return c, ok
}

// unauthenticated lists the methods a caller may reach without a device
// certificate: only enrollment and health.
func unauthenticated(method string) bool {
	return strings.HasPrefix(method, "/evident.v1.Enrollment/") ||
		strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

// Credentials is what authentication reads and confirms.
type Credentials interface {
	Device(ctx context.Context, id string) (store.Device, error)
	ConfirmCertificate(ctx context.Context, deviceID, serial string, at time.Time) (bool, error)
}

// authenticate resolves the caller from its verified client certificate.
// The TLS layer has already verified the chain against the device CA
// (tls.VerifyClientCertIfGiven), validity dates included; this checks that
// a chain is present, that it names an enrolled device, and that the store
// still accepts this certificate for it (not revoked, not replaced by a
// confirmed renewal). The first call with a renewed certificate confirms
// it.
func authenticate(ctx context.Context, devices Credentials, now func() time.Time) (caller, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return caller{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return caller{}, status.Error(codes.Unauthenticated, "a device certificate is required: enroll this device first (evident-agent enroll)")
	}
	leaf := ti.State.VerifiedChains[0][0]
	id, err := pki.DeviceID(leaf)
	if err != nil {
		return caller{}, status.Error(codes.Unauthenticated, err.Error())
	}
	d, err := devices.Device(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return caller{}, status.Errorf(codes.PermissionDenied, "device %s is not enrolled on this server", id)
		}
		return caller{}, status.Error(codes.Unavailable, "device lookup failed")
	}
	serial := pki.Serial(leaf)
	if err := refusal(d, serial); err != nil {
		return caller{}, err
	}
	if d.NextCertSerial != "" && serial == d.NextCertSerial {
		ok, err := devices.ConfirmCertificate(ctx, id, serial, now())
		if err != nil {
			return caller{}, status.Error(codes.Unavailable, "confirming the renewed certificate failed; retry")
		}
		if !ok {
			// Another renewal replaced it (or confirmed it) meanwhile:
			// decide on what the store holds now.
			if d, err = devices.Device(ctx, id); err != nil {
				return caller{}, status.Error(codes.Unavailable, "device lookup failed")
			}
			if err := refusal(d, serial); err != nil {
				return caller{}, err
			}
		}
	}
	return caller{id: id, serial: serial, notBefore: leaf.NotBefore, notAfter: leaf.NotAfter, dev: d}, nil
}

// refusal is why the store no longer accepts a device's certificate of
// this serial, as the status the agent gets; nil when it does.
func refusal(d store.Device, serial string) error {
	switch {
	case d.RevokedAt != nil && d.Retired:
		return status.Errorf(codes.PermissionDenied, "device %s was retired on %s (%s): its credentials no longer authenticate",
			d.ID, d.RevokedAt.UTC().Format(time.RFC3339), d.RevokeReason)
	case d.RevokedAt != nil:
		return status.Errorf(codes.PermissionDenied, "device %s was revoked on %s (%s): its credentials no longer authenticate; re-enroll it with a new enrollment secret",
			d.ID, d.RevokedAt.UTC().Format(time.RFC3339), d.RevokeReason)
	case d.SupersededBy != "":
		return status.Errorf(codes.PermissionDenied, "device %s was re-enrolled with the same TPM as %s; this identity is retired", d.ID, d.SupersededBy)
	case !d.Accepts(serial):
		return status.Errorf(codes.PermissionDenied, "this certificate of device %s (serial %s) was replaced by a renewal and is no longer accepted", d.ID, serial)
	}
	return nil
}

// UnaryAuth is the unary interceptor enforcing device authentication.
func UnaryAuth(devices Credentials, now func() time.Time) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if unauthenticated(info.FullMethod) {
			return h(ctx, req)
		}
		c, err := authenticate(ctx, devices, now)
		if err != nil {
			return nil, err
		}
		return h(context.WithValue(ctx, deviceKey{}, c), req)
	}
}

// StreamAuth is the stream interceptor enforcing device authentication.
func StreamAuth(devices Credentials, now func() time.Time) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if unauthenticated(info.FullMethod) {
			return h(srv, ss)
		}
		// Authentication reads the store: on a fresh stack, not the one
		// this stream keeps while it is open (see Server.Stream).
		var as grpc.ServerStream
		err := onFreshStack(func() error {
			c, err := authenticate(ss.Context(), devices, now)
			if err == nil {
				as = &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), deviceKey{}, c)}
			}
			return err
		})
		if err != nil {
			return err
		}
		return h(srv, as)
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
