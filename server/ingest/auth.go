package ingest

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/evident-dev/evident/server/pki"
	"github.com/evident-dev/evident/server/store"
)

type deviceKey struct{}

// DeviceFromContext returns the authenticated device id of a call.
func DeviceFromContext(ctx context.Context) (string, bool) {
	id, ok := ctx.Value(deviceKey{}).(string)
	return id, ok
}

// unauthenticated lists the methods a caller may reach without a device
// certificate: only enrollment and health.
func unauthenticated(method string) bool {
	return strings.HasPrefix(method, "/evident.v1.Enrollment/") ||
		strings.HasPrefix(method, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(method, "/grpc.reflection.")
}

// authenticate resolves the caller's device id from its verified client
// certificate. The TLS layer has already verified the chain against the
// device CA (tls.VerifyClientCertIfGiven); this checks that a chain is
// present, that it names a device, and that the device is enrolled.
func authenticate(ctx context.Context, devices store.Enrollment) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "a device certificate is required: enroll this device first (evident-agent enroll)")
	}
	id, err := pki.DeviceID(ti.State.VerifiedChains[0][0])
	if err != nil {
		return "", status.Error(codes.Unauthenticated, err.Error())
	}
	d, err := devices.Device(ctx, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return "", status.Errorf(codes.PermissionDenied, "device %s is not enrolled on this server", id)
		}
		return "", status.Error(codes.Unavailable, "device lookup failed")
	}
	if d.SupersededBy != "" {
		return "", status.Errorf(codes.PermissionDenied, "device %s was re-enrolled with the same TPM as %s; this identity is retired", id, d.SupersededBy)
	}
	return id, nil
}

// UnaryAuth is the unary interceptor enforcing device authentication.
func UnaryAuth(devices store.Enrollment) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if unauthenticated(info.FullMethod) {
			return h(ctx, req)
		}
		id, err := authenticate(ctx, devices)
		if err != nil {
			return nil, err
		}
		return h(context.WithValue(ctx, deviceKey{}, id), req)
	}
}

// StreamAuth is the stream interceptor enforcing device authentication.
func StreamAuth(devices store.Enrollment) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		if unauthenticated(info.FullMethod) {
			return h(srv, ss)
		}
		id, err := authenticate(ss.Context(), devices)
		if err != nil {
			return err
		}
		return h(srv, &authedStream{ServerStream: ss, ctx: context.WithValue(ss.Context(), deviceKey{}, id)})
	}
}

type authedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authedStream) Context() context.Context { return s.ctx }
