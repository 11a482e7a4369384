package sqlstore

import "testing"

func TestNumberPlaceholders(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT 1`, `SELECT 1`},
		{`a = ? AND b = ?`, `a = $1 AND b = $2`},
		{`a = ?1 AND b > ?2 AND c < ?2`, `a = $1 AND b > $2 AND c < $2`},
		{`a = '?' AND b = ?`, `a = '?' AND b = $1`},
		{`"we?ird" = ? AND x = 'it''s ?'`, `"we?ird" = $1 AND x = 'it''s ?'`},
		{`IN (?,?,?)`, `IN ($1,$2,$3)`},
	}
	for _, tt := range tests {
		if got := numberPlaceholders(tt.in); got != tt.want {
			t.Errorf("numberPlaceholders(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRewriteMax(t *testing.T) {
	sqlite := &Dialect{Max2: "max"}
	pg := &Dialect{Max2: "GREATEST", Numbered: true}
	q := `SET x = GREATEST(x, ?)`
	if got := sqlite.rewrite(q); got != `SET x = max(x, ?)` {
		t.Errorf("sqlite: %q", got)
	}
	if got := pg.rewrite(q); got != `SET x = GREATEST(x, $1)` {
		t.Errorf("postgres: %q", got)
	}
}
