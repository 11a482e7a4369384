package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	gattest "github.com/google/go-attestation/attest"

	"github.com/evident-dev/evident/agent"
	"github.com/evident-dev/evident/agent/config"
	"github.com/evident-dev/evident/agent/statusapi"
	"github.com/evident-dev/evident/agent/tpm"
	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/internal/safetext"
	"github.com/evident-dev/evident/platform/service"
)

func (a app) cmdStatus(args []string) error {
	fs := cli.NewFlagSet("status", a.stderr, "evident-agent status: the service's state, and the running agent's (over its local socket):\nlast collection, outbox depth, last ack, connection errors.")
	st := a.settings(fs, config.DataDir)
	asJSON := fs.Bool("json", false, "print the running agent's raw JSON")
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	b, err := statusapi.Get(context.Background(), statusapi.SocketPath(cfg.Get(config.DataDir)))
	if *asJSON {
		if err != nil {
			return err
		}
		_, err := a.stdout.Write(b)
		return err
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	if exe, xerr := os.Executable(); xerr == nil {
		if m, merr := service.NewManager(exe, definitions()); merr == nil {
			fmt.Fprintf(tw, "service:\t%s (%s)\n", m.Status(), m.System())
		}
	}
	if err != nil {
		tw.Flush()
		return fmt.Errorf("agent not reachable: %w", err)
	}
	var s agent.Status
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	conn := "disconnected"
	if s.Uplink.Connected {
		conn = "connected to " + s.Uplink.Peer
	}
	rows := [][2]string{
		{"device", s.DeviceID},
		{"server", s.Server + " (" + conn + ")"},
		{"version", s.Version},
		{"running since", s.StartedAt.Format(time.RFC3339)},
		{"last collection", fmt.Sprintf("%s (%d cycles, every %s)", s.LastCycleAt.Format(time.RFC3339), s.Cycles, s.Interval)},
		{"outbox", fmt.Sprintf("%d pending (%d bytes), next seq %d, dropped %d", s.Outbox.Depth, s.Outbox.Bytes, s.Outbox.NextSeq, s.Outbox.Dropped)},
		{"last ack", fmt.Sprintf("seq %d at %s", s.Uplink.LastAckSeq, s.Uplink.LastAckAt.Format(time.RFC3339))},
		{"certificate expires", s.CertExpires.Format(time.RFC3339)},
	}
	if s.TPM != "" {
		att := "none yet"
		if !s.LastAttestationAt.IsZero() {
			att = "refused"
			if s.LastAttestationOK {
				att = "verified"
			}
			att += " at " + s.LastAttestationAt.Format(time.RFC3339)
		}
		rows = append(rows, [2]string{"TPM", s.TPM}, [2]string{"last attestation", att})
	}
	for _, h := range s.HungCollectors {
		rows = append(rows, [2]string{"hung collector", fmt.Sprintf("%s since %s (abandoned after %s; not restarted until it returns)", h.Name, h.Since.Format(time.RFC3339), h.AbandonedAfter)})
	}
	if s.Uplink.LastError != "" {
		rows = append(rows, [2]string{"last error", s.Uplink.LastError + " at " + s.Uplink.LastErrorAt.Format(time.RFC3339)})
	}
	if p := s.Posture; p != nil {
		verdict := "yes"
		if !p.Compliant {
			verdict = fmt.Sprintf("no: %d controls need attention", len(p.Attention))
		}
		rows = append(rows, [2]string{"compliant", verdict + " (as the server judged at " + p.EvaluatedAt.Format(time.RFC3339) + ")"})
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "%s:\t%s\n", r[0], r[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if p := s.Posture; p != nil && len(p.Attention) > 0 {
		// The server's words, shown inert: no escape sequence reaches the
		// terminal.
		fmt.Fprintln(a.stdout, "\nneeds attention:")
		for _, c := range p.Attention {
			fmt.Fprintf(a.stdout, "  %s %s: %s\n", safetext.Terminal(c.ID), strings.ToUpper(safetext.Terminal(c.Status)), safetext.Terminal(c.Title))
			fmt.Fprintf(a.stdout, "      why: %s\n", safetext.Terminal(c.Reason))
			if c.Remediation != "" {
				fmt.Fprintf(a.stdout, "      how to fix: %s\n", safetext.Terminal(c.Remediation))
			}
		}
	}
	return nil
}

func (a app) cmdTPM(args []string) error {
	fs := cli.NewFlagSet("tpm", a.stderr, "evident-agent tpm: show the TPM this device would enroll with: its endorsement key's SHA-256 (what\n`evident-server run --ek-allowlist` lists) and its EK certificate's subject and issuer (what --ek-roots must chain to).")
	st := a.settings(fs, config.TPM)
	if err := cli.Parse(fs, args); err != nil {
		return err
	}
	cfg, err := st.load()
	if err != nil {
		return err
	}
	spec := cfg.Get(config.TPM)
	if spec == agent.TPMAuto {
		spec = ""
	}
	dev, err := tpm.Open(spec, "")
	if err != nil {
		return err
	}
	defer dev.Close()
	pub, certDER, err := dev.EK()
	if err != nil {
		return err
	}
	sum := sha256.Sum256(pub)
	fmt.Fprintf(a.stdout, "ek_sha256: %x\n", sum)
	if certDER == nil {
		fmt.Fprintln(a.stdout, "ek_certificate: none (the server must allowlist this EK)")
		return nil
	}
	cert, err := gattest.ParseEKCertificate(certDER)
	if err != nil {
		fmt.Fprintf(a.stdout, "ek_certificate: unreadable: %v\n", err)
		return nil
	}
	fmt.Fprintf(a.stdout, "ek_certificate_subject: %s\nek_certificate_issuer: %s\nek_certificate_serial: %s\n", cert.Subject, cert.Issuer, cert.SerialNumber)
	return nil
}
