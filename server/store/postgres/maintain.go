package postgres

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/evident-dev/evident/server/store"
)

// PostgreSQL's own autovacuum thresholds (its defaults): a table's
// statistics are gathered again once more than analyzeBase rows plus
// analyzeScale of its rows changed since the last time, and it is vacuumed
// once more than vacuumBase rows plus vacuumScale of its rows are dead.
// A table that only grows (observations) is vacuumed too, as PostgreSQL 13
// and later do (inserts past insertBase plus insertScale of its rows), so
// that its visibility map stays current.
const (
	analyzeBase, analyzeScale = 50, 0.1
	vacuumBase, vacuumScale   = 50, 0.2
	insertBase, insertScale   = 1000, 0.2
)

// maintain is the dialect's Maintain. Statistics matter from the first
// minutes: pgx prepares every statement, and PostgreSQL keeps one generic
// plan per statement and connection, planned on the statistics of the
// moment; planned on a new, empty database, a device's latest
// observations were read by walking its whole history (2 ms a report
// instead of 0.05 with 500 observations a device), until an ANALYZE made
// the connections plan again. autovacuum gathers them within a minute when
// it runs; some installations turn it off (CI machines), and then nothing
// does, and rows updated on every report (devices, control_states,
// latest_observations) pile up dead versions that every read steps over.
// So statistics are refreshed here whatever autovacuum does (ANALYZE
// samples a bounded number of rows), and tables autovacuum does not cover
// are vacuumed here too. SKIP_LOCKED leaves a table another session is
// vacuuming (autovacuum, another replica) for the next round (it is still
// listed as done: PostgreSQL only warns). It needs PostgreSQL 13 or later
// (n_ins_since_vacuum; SKIP_LOCKED is 12).
func maintain(ctx context.Context, db *sql.DB) (store.Maintenance, error) {
	// The store's tables: those of its schema that its role owns (a
	// schema such as public may hold other applications' tables too).
	rows, err := db.QueryContext(ctx, `SELECT format('%I.%I', s.schemaname, s.relname), s.relname,
			s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze, s.n_ins_since_vacuum,
			current_setting('autovacuum')::bool AND COALESCE((SELECT o.option_value::bool
				FROM pg_options_to_table(c.reloptions) o WHERE o.option_name = 'autovacuum_enabled'), true)
		FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
		WHERE s.schemaname = current_schema() AND c.relowner = current_user::regrole
		ORDER BY s.relname`)
	if err != nil {
		return store.Maintenance{}, fmt.Errorf("postgres: table statistics: %w", err)
	}
	type table struct {
		qualified, name string
		analyze, vacuum bool
	}
	var todo []table
	for rows.Next() {
		var t table
		var live, dead, mods, inserts int64
		var auto bool
		if err := rows.Scan(&t.qualified, &t.name, &live, &dead, &mods, &inserts, &auto); err != nil {
			rows.Close()
			return store.Maintenance{}, fmt.Errorf("postgres: table statistics: %w", err)
		}
		t.analyze = float64(mods) > analyzeBase+analyzeScale*float64(live)
		t.vacuum = !auto && (float64(dead) > vacuumBase+vacuumScale*float64(live) ||
			float64(inserts) > insertBase+insertScale*float64(live))
		if t.analyze || t.vacuum {
			todo = append(todo, t)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return store.Maintenance{}, fmt.Errorf("postgres: table statistics: %w", err)
	}
	var m store.Maintenance
	for _, t := range todo {
		var q string
		switch {
		case t.vacuum && t.analyze:
			q = `VACUUM (ANALYZE, SKIP_LOCKED) ` + t.qualified
		case t.vacuum:
			q = `VACUUM (SKIP_LOCKED) ` + t.qualified
		default:
			q = `ANALYZE (SKIP_LOCKED) ` + t.qualified
		}
		if _, err := db.ExecContext(ctx, q); err != nil {
			if c := code(err); c == "42P01" || c == "42501" {
				continue // dropped since the list was read, or not ours to maintain
			}
			return m, fmt.Errorf("postgres: %s: %w", q, err)
		}
		if t.analyze {
			m.Analyzed = append(m.Analyzed, t.name)
		}
		if t.vacuum {
			m.Vacuumed = append(m.Vacuumed, t.name)
		}
	}
	return m, nil
}
