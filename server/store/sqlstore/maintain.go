package sqlstore

import (
	"context"

	"github.com/evident-dev/evident/server/store"
)

var _ store.Maintainer = (*Store)(nil)

// Maintain implements store.Maintainer with the dialect's Maintain; a
// dialect without one (SQLite) has nothing to do.
func (s *Store) Maintain(ctx context.Context) (store.Maintenance, error) {
	if s.d.Maintain == nil {
		return store.Maintenance{}, nil
	}
	return s.d.Maintain(ctx, s.db.raw)
}

// Maintains implements store.Maintainer.
func (s *Store) Maintains() bool { return s.d.Maintain != nil }
