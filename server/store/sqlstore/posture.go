package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/store"
)

const day = int64(24 * time.Hour)

// The write path of every report runs the same few statements, inside
// transactions; parsing them each time is most of their cost in SQLite.
// They are prepared once when a writable store opens (DB.prepare).
func (s *Store) hotStatements() []string {
	return slices.Concat([]string{stmtDelta, stmtClose, stmtOpen, stmtEvaluated, stmtEvaluatedSeen, stmtUngroup, stmtGroup},
		ingestStatements(), s.scoreStatements(), confirmStatements(),
		// The fold runs every second on every replica.
		[]string{stmtTakeDeltas, stmtTakeSecretUses, stmtCount, stmtDaily, stmtSecretUses})
}

const (
	stmtDelta = `INSERT INTO posture_deltas (day, control_id, status, delta) VALUES (?,?,?,?)`
	stmtCount = `INSERT INTO posture_counts (control_id, status, shard, devices) VALUES (?,?,0,?)
		ON CONFLICT (control_id, status, shard) DO UPDATE SET devices = posture_counts.devices + excluded.devices`
	stmtDaily = `INSERT INTO posture_daily (day, control_id, status, shard, devices)
		SELECT GREATEST(?, COALESCE((SELECT max(day) FROM posture_daily), ?)), control_id, status, shard, devices
		FROM posture_counts WHERE control_id = ? AND status = ? AND shard = 0
		ON CONFLICT (day, control_id, status, shard) DO UPDATE SET devices = excluded.devices`
	stmtClose = `UPDATE control_states SET until_at = ?
		WHERE id = ? AND device_id = ? AND control_id = ? AND status = ? AND until_at IS NULL`
	stmtOpen = `INSERT INTO control_states (device_id, control_id, status, reason, evidence_seq,
		evidence, since_at, evaluated_at) VALUES (?,?,?,?,?,?,?,?)`
	// An evaluation's own change to its device's row, one statement: when
	// it is rescored next and whether it is compliant, and, with a report,
	// when it was last seen (stmtEvaluatedSeen). Each is an update of the
	// whole row, and of every index on it when an indexed column changes.
	stmtEvaluated = `UPDATE devices SET rescore_at = ?, compliant = ?
		WHERE id = ? AND (rescore_at <> ? OR compliant <> ?)`
	stmtEvaluatedSeen = `UPDATE devices SET rescore_at = ?, compliant = ?,
		last_seen_at = GREATEST(COALESCE(last_seen_at, 0), ?) WHERE id = ?`
	// FoldCounts' statements.
	stmtTakeDeltas = `DELETE FROM posture_deltas WHERE id IN
		(SELECT id FROM posture_deltas ORDER BY id LIMIT ?) RETURNING day, control_id, status, delta`
	stmtTakeSecretUses = `DELETE FROM enroll_secret_uses WHERE id IN
		(SELECT id FROM enroll_secret_uses ORDER BY id LIMIT ?) RETURNING secret_id, uses`
	stmtSecretUses   = `UPDATE enroll_secrets SET uses = uses + ? WHERE id = ?`
	stmtCompliantNow = `SELECT compliant FROM devices WHERE id = ?`
	stmtUngroup      = `DELETE FROM device_groups WHERE device_id = ?`
	stmtGroup        = `INSERT INTO device_groups (grp, device_id) VALUES (?, ?) ON CONFLICT DO NOTHING`
)

// confirmsPerUpdate bounds the intervals one statement confirms: every
// control of a policy in one statement (the default policy has 9), and the
// statements of 1 to confirmsPerUpdate rows are prepared ahead.
const confirmsPerUpdate = 16

// stmtConfirm confirms n open intervals (each still open with the status it
// was planned on) with the evaluation's reason and evidence: one statement
// for a whole evaluation, where each was a statement (and a round trip to
// PostgreSQL) of its own. The values are cast so that PostgreSQL types the
// VALUES list (BLOB is the dialect's byte type).
func stmtConfirm(n int) string {
	row := `(CAST(? AS BIGINT), ?, ?, ?, CAST(? AS BIGINT), CAST(? AS BLOB))`
	return `UPDATE control_states SET reason = v.column4, evidence_seq = v.column5, evidence = v.column6,
		evaluated_at = GREATEST(evaluated_at, ?), evaluations = evaluations + 1
		FROM (VALUES ` + repeatRows(row, n) + `) AS v
		WHERE control_states.id = v.column1 AND control_states.device_id = ? AND control_states.control_id = v.column2
		AND control_states.status = v.column3 AND control_states.until_at IS NULL`
}

func confirmStatements() []string {
	qs := make([]string, 0, confirmsPerUpdate)
	for n := 1; n <= confirmsPerUpdate; n++ {
		qs = append(qs, stmtConfirm(n))
	}
	return qs
}

func unixDay(t time.Time) int64 {
	n := nanos(t)
	d := n / day
	if n < 0 && n%day != 0 {
		d--
	}
	return d
}

// counter records that one aggregate moved by delta on the day of at, in
// the caller's transaction: a row of its own in posture_deltas, which no
// other transaction touches. The aggregates are shared by the whole fleet;
// updating their rows here would make every enrollment and every status
// change of the fleet wait for the one before it to commit, on a database
// that holds a row's lock until commit (PostgreSQL: with four replicas,
// most connections waited on those rows). The store's folder adds the
// deltas into posture_counts and posture_daily (FoldCounts, which each
// server replica runs every second), and the readers add the deltas not
// yet folded, so a count read is still exact at the instant it is read.
func (s *Store) counter(ctx context.Context, tx Tx, control, status string, delta int, at time.Time) error {
	_, err := tx.ExecContext(ctx, stmtDelta, unixDay(at), control, status, delta)
	return err
}

// foldBatch bounds the deltas one fold transaction takes.
const foldBatch = 4096

// FoldCounts implements store.Store. In transactions of up to foldBatch
// changes each, it adds the recorded aggregate deltas into posture_counts
// and posture_daily, and the counted uses of reusable enrollment secrets
// into enroll_secrets.uses, deleting what it adds. Each change is taken by
// the one transaction that deletes it, so replicas folding at once never
// count one twice. The daily history only grows forward: a change
// recorded after a later day's (a late evaluation, two racing across
// midnight) is recorded on that later day, so the newest day always holds
// the current counts.
func (s *Store) FoldCounts(ctx context.Context) (int, error) {
	folded := 0
	for {
		n, more, err := s.foldOnce(ctx)
		folded += n
		if err != nil && s.d.Contended != nil && s.d.Contended(err) {
			return folded, nil // another replica's fold: what is left waits for the next
		}
		if err != nil || !more {
			return folded, err
		}
	}
}

// foldOnce folds up to foldBatch aggregate deltas and foldBatch secret
// uses in one transaction. more reports a full batch of either.
func (s *Store) foldOnce(ctx context.Context) (n int, more bool, err error) {
	type key struct {
		day             int64
		control, status string
	}
	err = s.write(ctx, func(tx Tx) error {
		n, more = 0, false
		sums := map[key]int{}
		deltas, err := takeBatch(ctx, tx, stmtTakeDeltas,
			func(rows *sql.Rows) error {
				var k key
				var d int
				err := rows.Scan(&k.day, &k.control, &k.status, &d)
				sums[k] += d
				return err
			})
		if err != nil {
			return err
		}
		uses := map[string]int{}
		used, err := takeBatch(ctx, tx, stmtTakeSecretUses,
			func(rows *sql.Rows) error {
				var id string
				var k int
				err := rows.Scan(&id, &k)
				uses[id] += k
				return err
			})
		if err != nil {
			return err
		}
		n, more = deltas+used, deltas == foldBatch || used == foldBatch
		// Day by day, each day's rows in one order, then the secrets in
		// id order: replicas folding at once lock the rows in the same
		// order, so they never wait on each other in a cycle.
		keys := make([]key, 0, len(sums))
		for k, d := range sums {
			if d != 0 {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b key) int {
			return cmp.Or(cmp.Compare(a.day, b.day), cmp.Compare(a.control, b.control), cmp.Compare(a.status, b.status))
		})
		for _, k := range keys {
			if _, err := tx.ExecContext(ctx, stmtCount, k.control, k.status, sums[k]); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, stmtDaily, k.day, k.day, k.control, k.status); err != nil {
				return err
			}
		}
		for _, id := range slices.Sorted(maps.Keys(uses)) {
			if _, err := tx.ExecContext(ctx, stmtSecretUses, uses[id], id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, false, err
	}
	return n, more, nil
}

// takeBatch runs a DELETE … LIMIT ? RETURNING query with foldBatch, calls
// scan on each row it returns, and returns how many there were.
func takeBatch(ctx context.Context, tx Tx, query string, scan func(*sql.Rows) error) (int, error) {
	rows, err := tx.QueryContext(ctx, query, foldBatch)
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		if err := scan(rows); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

func affectedOne(res sql.Result, err error) error { return affected(1)(res, err) }

// affected checks that a statement changed want rows: fewer means another
// evaluation changed them first (store.ErrConflict).
func affected(want int) func(sql.Result, error) error {
	return func(res sql.Result, err error) error {
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n != int64(want) {
			return store.ErrConflict
		}
		return nil
	}
}

// RecordStates implements store.Recorder. A plan that no longer fits the
// stored intervals (a concurrent evaluation of the device landed first) is
// store.ErrConflict, and so is a transaction the database aborted for a
// concurrent one (PostgreSQL's deadlock and serialization failures): the
// caller re-plans either way.
func (s *Store) RecordStates(ctx context.Context, p store.StatePlan) error {
	err := s.recordStates(ctx, p)
	if err != nil && s.d.Contended != nil && s.d.Contended(err) {
		return store.ErrConflict
	}
	return err
}

func (s *Store) recordStates(ctx context.Context, p store.StatePlan) error {
	return s.write(ctx, func(tx Tx) error {
		// The device's row first, as a report does (Dialect.ForUpdate).
		var compliant bool
		err := tx.QueryRowContext(ctx, stmtCompliantNow+s.d.ForUpdate, p.DeviceID).Scan(&compliant)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		}
		if err != nil {
			return err
		}
		return s.applyPlan(ctx, tx, p, compliant, nil)
	})
}

// DevicesDue implements store.Recorder.
func (s *Store) DevicesDue(ctx context.Context, now time.Time) ([]string, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id FROM devices WHERE rescore_at <= ? ORDER BY id`, nanos(now))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// applyPlan applies an evaluation's plan in tx, which holds the device's
// row already where the dialect locks it (Dialect.ForUpdate): tx read it
// first, and compliant is what it said. seen, when not nil, is a report's
// receipt: the device's last contact moves to it in the same update.
func (s *Store) applyPlan(ctx context.Context, tx Tx, p store.StatePlan, compliant bool, seen *time.Time) error {
	at := nanos(p.At)
	// The aggregates move once per (control, status) the plan touches.
	deltas := map[[2]string]int{}
	for _, c := range p.Close {
		if c.Until == nil {
			return fmt.Errorf("close interval %d: no end", c.ID)
		}
		if err := affectedOne(tx.ExecContext(ctx, stmtClose, nanos(*c.Until), c.ID, p.DeviceID, c.ControlID, c.Status)); err != nil {
			return err
		}
		deltas[[2]string{c.ControlID, c.Status}]--
	}
	for confirm := p.Confirm; len(confirm) > 0; {
		part := confirm[:min(len(confirm), confirmsPerUpdate)]
		confirm = confirm[len(part):]
		args := make([]any, 0, 2+6*len(part))
		args = append(args, at) // the placeholders in order: SET, VALUES, WHERE
		for _, c := range part {
			args = append(args, c.ID, c.ControlID, c.Status, c.Reason, int64(c.EvidenceSeq), []byte(c.Evidence))
		}
		args = append(args, p.DeviceID)
		if err := affected(len(part))(tx.ExecContext(ctx, stmtConfirm(len(part)), args...)); err != nil {
			return err
		}
	}
	for _, o := range p.Open {
		_, err := tx.ExecContext(ctx, stmtOpen,
			p.DeviceID, o.ControlID, o.Status, o.Reason, int64(o.EvidenceSeq), []byte(o.Evidence), nanos(o.Since), nanos(o.EvaluatedAt))
		if err != nil {
			if s.d.Unique(err) {
				return store.ErrConflict // another evaluation opened it first
			}
			return err
		}
		deltas[[2]string{o.ControlID, o.Status}]++
	}
	if s.alerting.Load() {
		if err := s.alertsOf(ctx, tx, p); err != nil {
			return err
		}
	}
	var rescoreAt int64 // 0: every periodic rescore
	if !p.RescoreAt.IsZero() {
		rescoreAt = nanos(p.RescoreAt)
	}
	var err error
	if seen != nil {
		_, err = tx.ExecContext(ctx, stmtEvaluatedSeen, rescoreAt, p.Compliant, nanos(*seen), p.DeviceID)
	} else {
		_, err = tx.ExecContext(ctx, stmtEvaluated, rescoreAt, p.Compliant, p.DeviceID, rescoreAt, p.Compliant)
	}
	if err != nil {
		return err
	}
	if p.Compliant != compliant {
		d := -1
		if p.Compliant {
			d = 1
		}
		deltas[[2]string{"", "compliant"}] = d
	}
	for k, d := range deltas {
		if d == 0 {
			continue
		}
		if err := s.counter(ctx, tx, k[0], k[1], d, p.At); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, stmtUngroup, p.DeviceID); err != nil {
		return err
	}
	for _, g := range p.Groups {
		if _, err := tx.ExecContext(ctx, stmtGroup, g, p.DeviceID); err != nil {
			return err
		}
	}
	return nil
}

// FleetCounts implements store.Posture: the folded aggregates plus the
// deltas not yet folded, read in one statement (one snapshot).
func (s *Store) FleetCounts(ctx context.Context) (store.FleetCounts, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT control_id, status, sum(n) FROM (
		SELECT control_id, status, devices AS n FROM posture_counts
		UNION ALL SELECT control_id, status, delta FROM posture_deltas) a GROUP BY control_id, status`)
	if err != nil {
		return store.FleetCounts{}, err
	}
	defer rows.Close()
	fc := store.FleetCounts{Controls: map[string]map[string]int{}}
	for rows.Next() {
		var control, status string
		var n int
		if err := rows.Scan(&control, &status, &n); err != nil {
			return fc, err
		}
		addCount(&fc, control, status, n)
	}
	return fc, rows.Err()
}

func addCount(fc *store.FleetCounts, control, status string, n int) {
	if control == "" {
		switch status {
		case "devices":
			fc.Devices = n
		case "compliant":
			fc.Compliant = n
		}
		return
	}
	if n == 0 {
		delete(fc.Controls[control], status)
		return
	}
	if fc.Controls[control] == nil {
		fc.Controls[control] = map[string]int{}
	}
	fc.Controls[control][status] = n
}

// maxDays bounds DailyCounts.
const maxDays = 3700

// DailyCounts implements store.Posture.
func (s *Store) DailyCounts(ctx context.Context, from, to time.Time) ([]store.DayCounts, error) {
	d0, d1 := unixDay(from), unixDay(to)
	if d1 < d0 || d1-d0 >= maxDays {
		return nil, fmt.Errorf("daily counts: %s to %s is not a range of 1 to %d days", from.Format(time.DateOnly), to.Format(time.DateOnly), maxDays)
	}
	// One snapshot: a fold committing between the reads would otherwise
	// count its deltas twice (in the days and as pending) or not at all.
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true, Isolation: s.d.Snapshot})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// Each aggregate row (control, status, shard) as it stood: at the
	// start, its newest day before; then day by day. A day's counts are
	// the sums over the shards (databases from before the deltas keep
	// their shards' rows; changes are now folded into shard 0).
	type key struct {
		control, status string
		shard           int
	}
	cur := map[key]int{}
	rows, err := tx.QueryContext(ctx, `SELECT p.control_id, p.status, p.shard, p.devices FROM posture_daily p
		WHERE p.day = (SELECT max(q.day) FROM posture_daily q
			WHERE q.control_id = p.control_id AND q.status = p.status AND q.shard = p.shard AND q.day < ?)`, d0)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var k key
		var n int
		if err := rows.Scan(&k.control, &k.status, &k.shard, &n); err != nil {
			rows.Close()
			return nil, err
		}
		cur[k] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sum := func() store.FleetCounts {
		totals := map[[2]string]int{}
		for k, n := range cur {
			totals[[2]string{k.control, k.status}] += n
		}
		fc := store.FleetCounts{Controls: map[string]map[string]int{}}
		for k, n := range totals {
			addCount(&fc, k[0], k[1], n)
		}
		return fc
	}
	// The deltas not yet folded, as the fold will record them: each on
	// its day, or on the newest recorded day when that is later.
	var newest int64 = math.MinInt64
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(max(day), ?) FROM posture_daily`, newest).Scan(&newest); err != nil {
		return nil, err
	}
	type pending struct {
		day int64
		key key
		n   int
	}
	var pend []pending
	rows, err = tx.QueryContext(ctx, `SELECT day, control_id, status, sum(delta) FROM posture_deltas
		GROUP BY day, control_id, status ORDER BY day`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var p pending
		if err := rows.Scan(&p.day, &p.key.control, &p.key.status, &p.n); err != nil {
			rows.Close()
			return nil, err
		}
		p.day = max(p.day, newest)
		pend = append(pend, p)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT day, control_id, status, shard, devices FROM posture_daily
		WHERE day >= ? AND day <= ? ORDER BY day`, d0, d1)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := make([]store.DayCounts, 0, d1-d0+1)
	next := d0
	flush := func(upTo int64) {
		if next >= upTo {
			return
		}
		fc := sum()
		for ; next < upTo; next++ {
			out = append(out, store.DayCounts{Day: time.Unix(0, next*day).UTC(), FleetCounts: cloneCounts(fc)})
		}
	}
	for rows.Next() {
		var dd int64
		var k key
		var n int
		if err := rows.Scan(&dd, &k.control, &k.status, &k.shard, &n); err != nil {
			return nil, err
		}
		flush(dd)
		cur[k] = n
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	// Every pending day is at or after every recorded one.
	for _, p := range pend {
		if p.day > d1 {
			break
		}
		flush(p.day)
		cur[p.key] += p.n
	}
	flush(d1 + 1)
	return out, nil
}

func cloneCounts(fc store.FleetCounts) store.FleetCounts {
	c := store.FleetCounts{Devices: fc.Devices, Compliant: fc.Compliant, Controls: make(map[string]map[string]int, len(fc.Controls))}
	for k, v := range fc.Controls {
		m := make(map[string]int, len(v))
		for s, n := range v {
			m[s] = n
		}
		c.Controls[k] = m
	}
	return c
}

// cursor is a device list position: the sort it belongs to, the sort key
// of the last row shown and its id.
type cursor struct {
	Sort string `json:"s"`
	Key  any    `json:"k"`
	ID   string `json:"i"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s, sort string) (cursor, error) {
	var raw struct {
		Sort string          `json:"s"`
		Key  json.RawMessage `json:"k"`
		ID   string          `json:"i"`
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 4096 || json.Unmarshal(b, &raw) != nil || raw.Sort != sort || raw.ID == "" ||
		len(raw.Key) == 0 || string(raw.Key) == "null" {
		return cursor{}, store.ErrBadCursor
	}
	c := cursor{Sort: raw.Sort, ID: raw.ID}
	// The key is decoded as its sort's type: a last_seen key is Unix
	// nanoseconds, which a float64 would round (and so skip or repeat rows).
	switch sort {
	case store.SortHostname:
		var k string
		if json.Unmarshal(raw.Key, &k) != nil {
			return c, store.ErrBadCursor
		}
		c.Key = k
	case store.SortLastSeen:
		var k int64
		if json.Unmarshal(raw.Key, &k) != nil {
			return c, store.ErrBadCursor
		}
		c.Key = k
	default:
		return c, store.ErrBadCursor
	}
	return c, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// DevicePage implements store.Posture.
func (s *Store) DevicePage(ctx context.Context, q store.DeviceQuery) (store.DevicePage, error) {
	if q.Sort == "" {
		q.Sort = store.SortHostname
	}
	if q.Limit <= 0 {
		q.Limit = 50
	}
	q.Limit = min(q.Limit, store.MaxPageSize)
	var where []string
	var args []any
	ci := s.d.CaseFold
	add := func(cond string, a ...any) { where = append(where, cond); args = append(args, a...) }
	openState := `SELECT 1 FROM control_states c WHERE c.device_id = d.id AND c.until_at IS NULL`
	switch {
	case q.Status == "":
	case q.Control != "" && q.Status == store.NoData:
		add(`NOT EXISTS (`+openState+` AND c.control_id = ?)`, q.Control)
	case q.Control != "":
		add(`EXISTS (`+openState+` AND c.control_id = ? AND c.status = ?)`, q.Control, q.Status)
	case len(q.Controls) == 0:
		return store.DevicePage{}, fmt.Errorf("device query: status %q without a control needs the policy's controls", q.Status)
	case q.Status == store.NoData:
		a := []any{}
		for _, c := range q.Controls {
			a = append(a, c)
		}
		add(`(SELECT count(*) FROM control_states c WHERE c.device_id = d.id AND c.until_at IS NULL AND c.control_id IN (`+
			placeholders(len(q.Controls))+`)) < ?`, append(a, len(q.Controls))...)
	default:
		a := []any{q.Status}
		for _, c := range q.Controls {
			a = append(a, c)
		}
		add(`EXISTS (`+openState+` AND c.status = ? AND c.control_id IN (`+placeholders(len(q.Controls))+`))`, a...)
	}
	if q.Compliant != nil {
		add(`d.compliant = ?`, *q.Compliant)
	}
	if q.GOOS != "" {
		add(`d.goos = ?`, q.GOOS)
	}
	if q.Group != "" {
		add(`EXISTS (SELECT 1 FROM device_groups g WHERE g.grp = ? AND g.device_id = d.id)`, q.Group)
	}
	if !q.SeenBefore.IsZero() {
		add(`COALESCE(d.last_seen_at, 0) < ?`, nanos(q.SeenBefore))
	}
	switch {
	case q.Hostname == "":
	case q.HostnameExact:
		add(`d.hostname = ?`, q.Hostname)
	default:
		// A prefix is an index range: from the prefix up to the prefix
		// followed by the greatest code point (hostnames are UTF-8).
		add(ci(`d.hostname`)+` >= `+ci(`?`)+` AND `+ci(`d.hostname`)+` < `+ci(`?`), q.Hostname, q.Hostname+"\U0010FFFF")
	}
	var order string
	switch q.Sort {
	case store.SortHostname:
		order = ci(`d.hostname`) + `, d.id`
	case store.SortLastSeen:
		order = `COALESCE(d.last_seen_at, 0), d.id`
	default:
		return store.DevicePage{}, fmt.Errorf("device query: unknown sort %q", q.Sort)
	}
	if q.After != "" {
		c, err := decodeCursor(q.After, q.Sort)
		if err != nil {
			return store.DevicePage{}, err
		}
		if q.Sort == store.SortHostname {
			// The first term starts the index range; the second skips the
			// rows of the same key already shown.
			add(ci(`d.hostname`)+` >= `+ci(`?`)+` AND (`+ci(`d.hostname`)+` > `+ci(`?`)+` OR d.id > ?)`, c.Key, c.Key, c.ID)
		} else {
			add(`COALESCE(d.last_seen_at, 0) >= ? AND (COALESCE(d.last_seen_at, 0) > ? OR d.id > ?)`, c.Key, c.Key, c.ID)
		}
	}
	query := `SELECT ` + prefixed("d.", deviceCols) + `, d.compliant FROM devices d`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, ` AND `)
	}
	query += ` ORDER BY ` + order + ` LIMIT ?`
	args = append(args, q.Limit+1)
	// One read transaction: the rows, their intervals and groups agree
	// even while evaluations are recorded.
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return store.DevicePage{}, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, query, args...)
	if err != nil {
		return store.DevicePage{}, err
	}
	var page store.DevicePage
	for rows.Next() {
		var ds store.DeviceStatus
		var err error
		if ds.Device, err = scanDevice(rows, &ds.Compliant); err != nil {
			rows.Close()
			return page, err
		}
		page.Devices = append(page.Devices, ds)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return page, err
	}
	if len(page.Devices) > q.Limit {
		page.Devices = page.Devices[:q.Limit]
		last := page.Devices[q.Limit-1]
		c := cursor{Sort: q.Sort, ID: last.ID, Key: last.Hostname}
		if q.Sort == store.SortLastSeen {
			var k int64
			if last.LastSeenAt != nil {
				k = nanos(*last.LastSeenAt)
			}
			c.Key = k
		}
		page.Next = encodeCursor(c)
	}
	if len(page.Devices) == 0 {
		return page, nil
	}
	return page, fillPage(ctx, tx, page.Devices)
}

// fillPage reads the open intervals and groups of a page's devices.
func fillPage(ctx context.Context, tx Tx, devs []store.DeviceStatus) error {
	idx := make(map[string]int, len(devs))
	ids := make([]any, len(devs))
	for i, d := range devs {
		idx[d.ID], ids[i] = i, d.ID
	}
	rows, err := tx.QueryContext(ctx, `SELECT device_id, id, control_id, status, reason, evidence_seq, since_at, evaluated_at, evaluations
		FROM control_states WHERE until_at IS NULL AND device_id IN (`+placeholders(len(ids))+`) ORDER BY device_id, control_id`, ids...)
	if err != nil {
		return err
	}
	for rows.Next() {
		var dev string
		var st store.ControlState
		var seq, since, eval int64
		if err := rows.Scan(&dev, &st.ID, &st.ControlID, &st.Status, &st.Reason, &seq, &since, &eval, &st.Evaluations); err != nil {
			rows.Close()
			return err
		}
		st.EvidenceSeq, st.Since, st.EvaluatedAt = uint64(seq), fromNanos(since), fromNanos(eval)
		devs[idx[dev]].States = append(devs[idx[dev]].States, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	rows, err = tx.QueryContext(ctx, `SELECT device_id, grp FROM device_groups WHERE device_id IN (`+placeholders(len(ids))+`) ORDER BY grp`, ids...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var dev, g string
		if err := rows.Scan(&dev, &g); err != nil {
			return err
		}
		devs[idx[dev]].Groups = append(devs[idx[dev]].Groups, g)
	}
	return rows.Err()
}
