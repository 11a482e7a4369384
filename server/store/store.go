// Package store defines what the server keeps and the small interface it is
// kept behind. Implementations: sqlite (the default, embedded) and, later,
// postgres; storetest is the conformance suite both must pass.
//
// Observations are append-only evidence, unique on (device_id, seq), so a
// resend after a reconnect never duplicates evidence. Control states are
// intervals (device, control, status, since, until), so a Type II question
// ("was every device compliant all period?") is a range query.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"
)

// ErrNotFound is returned when a looked-up record does not exist.
var ErrNotFound = errors.New("not found")

// ErrExpired is returned when a single-use record existed but had expired;
// it is deleted all the same.
var ErrExpired = errors.New("expired")

// Store is everything the server persists.
type Store interface {
	Enrollment
	TPM
	Evidence
	Scores
	Periods
	Chain
	Web
	Inventory
	Waivers
	Posture
	Leases
	Credentials
	Commands
	Alerts
	// Prune applies the retention rule: observations received before
	// before lose their content (payload, sources, error text) but keep
	// their row, times, status and chain hash, so hash chains and bundles
	// over them still verify (the bundle marks them pruned); a device's
	// latest observation of each collector is kept whole (it is what the
	// device is scored on). Attestations received before before lose their
	// raw message; their verdicts stay. Alerts done before before are
	// deleted. Intervals are never touched.
	Prune(ctx context.Context, before, now time.Time) (PruneResult, error)
	RecordStates(ctx context.Context, p StatePlan) error
	// DevicesDue lists the devices whose recorded evaluation can have
	// changed with time alone by now (StatePlan.RescoreAt at or before
	// now), in id order: what the periodic rescore evaluates.
	DevicesDue(ctx context.Context, now time.Time) ([]string, error)
	// FoldCounts folds the read model's aggregate changes recorded since
	// the last fold into its counts and daily history, and returns how
	// many it folded. Reads are exact either way (they add what is not
	// folded yet); folding keeps them cheap. Any number of replicas may
	// fold at once: each change is folded once.
	FoldCounts(ctx context.Context) (int, error)
	// Ping checks that the store answers a query: what /readyz reports.
	Ping(ctx context.Context) error
	Close() error
}

// Leases let one of several server replicas sharing a store do the
// periodic work (rescoring the fleet, purging expired records) at a time.
type Leases interface {
	// TakeLease takes the named lease for holder until until, or renews it
	// when holder already has it. It returns false, taking nothing, while
	// another holder's lease has not expired at now.
	TakeLease(ctx context.Context, name, holder string, now, until time.Time) (bool, error)
}

// Credentials is the ledger of device certificates and revocations: what
// authenticates a device, kept in the store so every replica agrees.
type Credentials interface {
	// AddCertificate records a certificate issued to an enrolled device by
	// renewal: it becomes the device's next certificate (NextCertSerial),
	// accepted alongside the current one until ConfirmCertificate. A
	// device has one next certificate: a newer renewal replaces it.
	AddCertificate(ctx context.Context, deviceID string, c Certificate) error
	// ConfirmCertificate makes the device's next certificate, when its
	// serial is serial, the current one: the previous one is refused from
	// then on. It returns false, changing nothing, when serial is not the
	// device's next certificate.
	ConfirmCertificate(ctx context.Context, deviceID, serial string, at time.Time) (bool, error)
	// CertificateByKey returns the certificate ever issued for a key (the
	// SHA-256 of its PKIX DER): a device key is never certified twice.
	// ErrNotFound when none.
	CertificateByKey(ctx context.Context, keySHA256 []byte) (Certificate, error)
	// RevokeDevice revokes a device's credentials at at (retire: the
	// device left the fleet for good). ErrNotFound for an unknown device;
	// a device already revoked keeps its first revocation.
	RevokeDevice(ctx context.Context, deviceID string, at time.Time, reason string, retire bool) error
	// CertificatesExpiring counts the devices not revoked whose accepted
	// certificate expires before before (expired ones included).
	CertificatesExpiring(ctx context.Context, before time.Time) (int, error)
	// CredentialChanges lists the devices whose accepted certificates or
	// revocation changed at or after since: what each replica checks its
	// open streams against.
	CredentialChanges(ctx context.Context, since time.Time) ([]Device, error)
}

// Commands are requests for a device's agent, kept in the store until the
// replica holding the device's stream sends them.
type Commands interface {
	// RequestCollection records a request for the device to collect now
	// and returns its id.
	RequestCollection(ctx context.Context, r CollectRequest) (int64, error)
	// PendingCollections lists the requests not sent yet made at or after
	// since, oldest first.
	PendingCollections(ctx context.Context, since time.Time) ([]CollectRequest, error)
	// MarkCollectionSent claims a request for sending: false when another
	// replica already did.
	MarkCollectionSent(ctx context.Context, id int64, at time.Time) (bool, error)
	// Collection returns a request by id; ErrNotFound when unknown.
	Collection(ctx context.Context, id int64) (CollectRequest, error)
}

// CollectRequest asks a device's agent to run collectors now.
type CollectRequest struct {
	ID       int64
	DeviceID string
	// Collectors to run; empty runs them all.
	Collectors  []string
	RequestedAt time.Time
	RequestedBy string
	// SentAt is when a replica sent it on the device's stream (nil until).
	SentAt *time.Time
}

// PruneResult counts what a Prune dropped the content of.
type PruneResult struct {
	Observations, Attestations int
	// Alerts are done alerts deleted (store.Alerts).
	Alerts int
}

// Certificate is a device certificate the CA issued.
type Certificate struct {
	// Serial is the certificate's serial number, lowercase hex.
	Serial   string
	DeviceID string
	// KeySHA256 is the SHA-256 of the certified public key (PKIX DER).
	KeySHA256 []byte
	IssuedAt  time.Time
	NotAfter  time.Time
}

// Enrollment is what enrollment needs.
type Enrollment interface {
	CreateEnrollSecret(ctx context.Context, s EnrollSecret) error
	// UseEnrollSecret finds an active secret by hash, counts a use and, for
	// single-use secrets, consumes it. ErrNotFound when no usable secret
	// matches (unknown, expired, revoked or used up).
	UseEnrollSecret(ctx context.Context, hash []byte, now time.Time) (EnrollSecret, error)
	// PeekEnrollSecret is UseEnrollSecret without counting a use: the
	// first half of a TPM enrollment checks the secret before it spends
	// TPM work, and the second half spends it.
	PeekEnrollSecret(ctx context.Context, hash []byte, now time.Time) (EnrollSecret, error)
	// EnrollDevice records a new device as given (its links to earlier
	// devices are package devices' rule), and its TPM when d.TPM is set.
	// A TPM names one live device: every earlier device with the same EK
	// is superseded (SupersededBy) in the same transaction.
	EnrollDevice(ctx context.Context, d Device) (Device, error)
	// UpdateDeviceFacts refreshes what a device says of itself and
	// reports whether anything changed. An empty field keeps what is
	// stored: an agent that cannot read its serial number does not erase
	// the one it enrolled with. ErrNotFound for an unknown device.
	UpdateDeviceFacts(ctx context.Context, id string, f DeviceFacts) (bool, error)
	Device(ctx context.Context, id string) (Device, error)
	// DeviceByMachineID returns the newest device with this machine id;
	// ErrNotFound when none.
	DeviceByMachineID(ctx context.Context, machineID string) (Device, error)
	Devices(ctx context.Context) ([]Device, error)
	// EnrollSecrets returns every enrollment secret (hashes only), newest
	// first, with its uses counted.
	EnrollSecrets(ctx context.Context) ([]EnrollSecret, error)
	// RevokeEnrollSecret revokes a secret: it enrolls nothing from then on.
	// ErrNotFound when there is no such secret; a revoked one keeps its
	// first revocation.
	RevokeEnrollSecret(ctx context.Context, id string, at time.Time) error
}

// TPM is what TPM-bound enrollment and attestation need (README: TPM attestation).
type TPM interface {
	// CreateActivation stores a pending credential activation.
	CreateActivation(ctx context.Context, a Activation) error
	// TakeActivation deletes and returns a pending activation: ErrNotFound
	// when unknown or already taken, ErrExpired when past its expiry.
	TakeActivation(ctx context.Context, id string, now time.Time) (Activation, error)
	// DeviceTPM returns a device's enrolled TPM; ErrNotFound when the
	// device enrolled without one.
	DeviceTPM(ctx context.Context, deviceID string) (DeviceTPM, error)
	// DeviceByEK returns the newest device enrolled with the EK of this
	// hash, and its TPM; ErrNotFound when none.
	DeviceByEK(ctx context.Context, ekHash []byte) (string, DeviceTPM, error)
	// MachineTPM returns the newest device with this machine id that
	// enrolled with a TPM, and its TPM; ErrNotFound when none did.
	MachineTPM(ctx context.Context, machineID string) (string, DeviceTPM, error)
	// AllowTPMChange lets the next enrollment that replaces this device's
	// EK or AK succeed, until the given time (an admin's decision).
	AllowTPMChange(ctx context.Context, deviceID string, until time.Time) error
	// TakeTPMChangeAllowance consumes a device's allowance: ErrNotFound
	// when there is none, ErrExpired when it lapsed.
	TakeTPMChangeAllowance(ctx context.Context, deviceID string, now time.Time) error
	// CreateNonce stores an attestation nonce issued to a device.
	CreateNonce(ctx context.Context, n Nonce) error
	// HasLiveNonce reports whether a device holds an unexpired, unused
	// nonce (the server issues one at a time).
	HasLiveNonce(ctx context.Context, deviceID string, now time.Time) (bool, error)
	// TakeNonce deletes and returns a device's nonce with this value:
	// ErrNotFound when unknown or already used (a replay), ErrExpired when
	// past its expiry. It is deleted before the quote is verified, so a
	// nonce is never accepted twice.
	TakeNonce(ctx context.Context, deviceID string, value []byte, now time.Time) (Nonce, error)
	// AddAttestation stores a verdict and returns its id.
	AddAttestation(ctx context.Context, a Attestation) (int64, error)
	// LatestAttestation returns a device's newest attestation (the newest
	// verified one with verifiedOnly); ErrNotFound when it has none.
	LatestAttestation(ctx context.Context, deviceID string, verifiedOnly bool) (Attestation, error)
	// PurgeExpired deletes expired nonces, activations and allowances.
	PurgeExpired(ctx context.Context, now time.Time) error
}

// DeviceTPM is a device's TPM as enrolled.
type DeviceTPM struct {
	EKHash        []byte // SHA-256 of the EK public key, PKIX DER
	EKTrust       string // how the EK was trusted: manufacturer-certificate or allowlist
	EKCertSubject string
	EKCertIssuer  string
	EKCertSerial  string
	AKPublic      []byte // TPMT_PUBLIC, exactly as activated
	EnrolledAt    time.Time
}

// Activation is a pending TPM2_MakeCredential challenge.
type Activation struct {
	ID string
	// SecretHash is the enrollment secret's hash: the proof must come with
	// the same secret.
	SecretHash []byte
	// ExpectedHash is SHA-256 of the credential secret the TPM must
	// recover.
	ExpectedHash []byte
	EKHash       []byte
	AKPublic     []byte
	ExpiresAt    time.Time
}

// Nonce is an attestation challenge issued to a device.
type Nonce struct {
	Value     []byte
	DeviceID  string
	ExpiresAt time.Time
}

// Attestation is one verified (or refused) attestation of a device.
type Attestation struct {
	ID         int64
	DeviceID   string
	ReceivedAt time.Time
	Verified   bool
	// Verdict is the verifier's JSON verdict: checks, reasons, PCRs,
	// Secure Boot state, TPM clock.
	Verdict json.RawMessage
	// FirstSeq and LastSeq bound the observations the quote covers.
	FirstSeq, LastSeq uint64
	// Raw is the agent's Attestation message as received (quotes, PCRs,
	// event log, covered report), for re-verification offline.
	Raw []byte
}

// Evidence is what ingest needs.
type Evidence interface {
	// Ingest stores observations for one device in one transaction,
	// ignoring any (device_id, seq) already stored, and returns how many
	// were new.
	Ingest(ctx context.Context, deviceID string, obs []Observation, receivedAt time.Time) (int, error)
	// Latest returns the newest observation per collector of a device.
	Latest(ctx context.Context, deviceID string) (map[string]Observation, error)
	// History returns up to limit observations of one collector, newest
	// first.
	History(ctx context.Context, deviceID, collector string, limit int) ([]Observation, error)
	// Counts returns how many observations a device has stored and the
	// range of seqs.
	Counts(ctx context.Context, deviceID string) (ObservationCounts, error)
}

// Scores is what scoring and reports read; package states records.
type Scores interface {
	// CurrentStates returns the open interval of every control of a device.
	CurrentStates(ctx context.Context, deviceID string) ([]ControlState, error)
	// StateHistory returns every interval of a device, oldest first.
	StateHistory(ctx context.Context, deviceID string) ([]ControlState, error)
}

// EnrollSecret is a hashed enrollment secret.
type EnrollSecret struct {
	ID        string
	Hash      []byte
	Label     string
	CreatedAt time.Time
	ExpiresAt *time.Time
	SingleUse bool
	Uses      int
	RevokedAt *time.Time
}

// Device is an enrolled device.
// DeviceFacts is what a connected agent says of its host.
type DeviceFacts struct {
	Hostname, OSVersion, SerialNumber, AgentVersion string
}

type Device struct {
	ID           string
	Hostname     string
	GOOS         string
	GOARCH       string
	OSVersion    string
	MachineID    string
	SerialNumber string
	AgentVersion string
	SecretID     string
	EnrolledAt   time.Time
	LastSeenAt   *time.Time
	// PreviousID is the latest earlier device with the same machine id
	// (a re-imaged or reinstalled machine), if any.
	PreviousID string
	// Reenrolled counts the enrollments before this one for this machine.
	Reenrolled int
	// TPM is set by EnrollDevice's caller for a TPM-bound enrollment; reads
	// leave it nil (see TPM.DeviceTPM).
	TPM *DeviceTPM
	// SupersededBy is the device that re-enrolled with this device's TPM;
	// a superseded device no longer authenticates.
	SupersededBy string
	// Cert is the certificate issued at enrollment: set by EnrollDevice's
	// caller (reads leave it nil and fill CertSerial and CertNotAfter).
	Cert *Certificate
	// CertSerial is the device's accepted certificate ("" for a device
	// enrolled before certificates were recorded: any certificate the CA
	// issued for it authenticates until its first renewal is confirmed).
	CertSerial   string
	CertNotAfter time.Time
	// NextCertSerial is a renewed certificate not confirmed yet: it
	// authenticates too, and its first use confirms it.
	NextCertSerial   string
	NextCertNotAfter time.Time
	// RevokedAt is when the device's credentials were revoked (nil if
	// not); Retired means it left the fleet (disposed of, not stolen).
	RevokedAt    *time.Time
	RevokeReason string
	Retired      bool
}

// Accepts reports whether a certificate of this serial authenticates the
// device: not revoked or superseded, and the serial its current or next
// certificate (any, for a device with no certificate recorded).
func (d Device) Accepts(serial string) bool {
	if d.RevokedAt != nil || d.SupersededBy != "" {
		return false
	}
	return d.CertSerial == "" || serial == d.CertSerial || (d.NextCertSerial != "" && serial == d.NextCertSerial)
}

// OS is the device's platform and version as reports show it
// ("linux Debian GNU/Linux 12").
func (d Device) OS() string { return strings.TrimSpace(d.GOOS + " " + d.OSVersion) }

// Observation as stored.
type Observation struct {
	Seq           uint64
	Collector     string
	CollectedAt   time.Time // as clamped by ingest
	ReceivedAt    time.Time
	ClockSkew     bool // CollectedAt was clamped
	Status        string
	Error         string
	ParserVersion int
	Payload       json.RawMessage
	Sources       json.RawMessage
	DurationMS    int
}

// ObservationCounts summarises a device's stored evidence.
type ObservationCounts struct {
	Total  int
	MinSeq uint64
	MaxSeq uint64
	First  time.Time
	Last   time.Time
}

// Control statuses.
const (
	Pass          = "pass"
	Fail          = "fail"
	Unknown       = "unknown"
	NotApplicable = "not_applicable"
)

// ControlState is one interval of a control's status on a device.
type ControlState struct {
	// ID names a stored interval (0 before it is stored).
	ID        int64 `json:"-"`
	ControlID string
	Status    string
	Reason    string
	// EvidenceSeq is the observation that decided the status (0 if none).
	EvidenceSeq uint64
	// Evidence is what the evaluation saw (JSON). The scoring reads of a
	// report's transaction leave it nil and set LoadEvidence: one check of
	// the default policy looks at an open interval's evidence, and the
	// others' were most of the bytes that read copied (EvidenceJSON).
	Evidence json.RawMessage
	Since    time.Time
	Until    *time.Time // nil while open
	// EvaluatedAt is the last time this interval was confirmed.
	EvaluatedAt time.Time
	// Evaluations counts confirmations of this interval.
	Evaluations int
	// LoadEvidence, when set, reads Evidence from the store, within the
	// read that made this state (a transaction: valid until it ends).
	LoadEvidence func() (json.RawMessage, error) `json:"-"`
}

// EvidenceJSON returns the state's evidence: Evidence, or what
// LoadEvidence reads when the read that made it left it for later.
func (s ControlState) EvidenceJSON() (json.RawMessage, error) {
	if s.Evidence == nil && s.LoadEvidence != nil {
		return s.LoadEvidence()
	}
	return s.Evidence, nil
}

// Maintainer is a store that keeps its database's statistics and dead rows
// in check itself, for a database whose own background work is off or too
// slow for a new deployment.
type Maintainer interface {
	// Maintain refreshes the planner's statistics of every table that
	// changed enough since they were last gathered and, where the
	// database does not vacuum a table itself, removes its dead rows. It
	// returns what it did.
	Maintain(ctx context.Context) (Maintenance, error)
	// Maintains reports whether Maintain has anything to do for this
	// store's database (SQLite keeps itself).
	Maintains() bool
}

// Maintenance is what one Maintain did: tables by name.
type Maintenance struct {
	Analyzed, Vacuumed []string
}
