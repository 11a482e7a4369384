package agent

import (
	"context"
	"errors"
	"time"

	"github.com/evident-dev/evident/agent/identity"
	evidentv1 "github.com/evident-dev/evident/proto/evident/v1"
)

// Renewal pacing: a failed renewal is retried after renewRetry, doubling to
// renewRetryMax; between renewals the agent looks again at least every
// renewCheckMax, and after every collection cycle.
const (
	renewRetry    = time.Minute
	renewRetryMax = time.Hour
	renewCheckMax = time.Hour
)

// renewLoop keeps the device certificate renewed: it finishes a renewal
// left on disk, renews once two thirds of the certificate's lifetime have
// passed, and says clearly when the certificate has expired (only a new
// enrollment helps then). check makes it look at once.
func (a *Agent) renewLoop(ctx context.Context, check <-chan struct{}) {
	retry := renewRetry
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-check:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		case <-t.C:
		}
		wait, err := a.renewOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		a.mu.Lock()
		a.renewErr = ""
		if err != nil {
			a.renewErr = err.Error()
		}
		a.mu.Unlock()
		if err != nil {
			wait = retry
			retry = min(retry*2, renewRetryMax)
		} else {
			retry = renewRetry
		}
		t.Reset(wait)
	}
}

// renewOnce does what is due now and returns how long until it should look
// again.
func (a *Agent) renewOnce(ctx context.Context) (time.Duration, error) {
	log := a.cfg.Log
	now := a.clock.Now()
	if err := a.id.Expired(now); err != nil {
		a.mu.Lock()
		first := !a.expiredLogged
		a.expiredLogged = true
		a.mu.Unlock()
		if first {
			log.Error("this device can no longer deliver evidence; observations are kept in the outbox", "err", err)
		}
		return renewCheckMax, nil
	}
	if a.id.HasPendingRenewal() {
		err := a.id.ResumeRenewal(ctx)
		if err != nil && !errors.Is(err, identity.ErrRenewalRefused) {
			log.Warn("device certificate renewal not confirmed yet; will retry", "err", err)
			return 0, err
		}
		if err != nil {
			log.Warn("the server refused the renewed certificate; renewing again", "err", err)
		} else {
			log.Info("device certificate renewed", "expires", a.id.CertExpiry().UTC())
			a.up.Redial()
			return min(a.id.RenewAt().Sub(now), renewCheckMax), nil
		}
	}
	at := a.id.RenewAt()
	if now.Before(at) {
		return min(at.Sub(now), renewCheckMax), nil
	}
	log.Info("renewing the device certificate", "expires", a.id.CertExpiry().UTC(), "due_since", at.UTC())
	var prove identity.Prover
	if a.id.TPM != "" {
		prove = func(nonce, csr []byte) (*evidentv1.Attestation, error) { return a.quote(nonce, csr) }
	}
	if err := a.id.Renew(ctx, prove); err != nil {
		log.Warn("device certificate renewal failed; will retry", "err", err, "expires", a.id.CertExpiry().UTC())
		return 0, err
	}
	log.Info("device certificate renewed", "expires", a.id.CertExpiry().UTC())
	a.up.Redial()
	return min(a.id.RenewAt().Sub(a.clock.Now()), renewCheckMax), nil
}
