package sqlstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// maxGroup bounds the writes committed together.
const maxGroup = 64

// errClosed is a write submitted to a closed store.
var errClosed = errors.New("store closed")

// group commits concurrent writes (reports' evidence, evaluations' states)
// in one transaction: one writer goroutine takes the first write waiting and
// every other already waiting, up to maxGroup, runs each in a savepoint of
// one transaction and commits once. Nothing waits to fill a group, so a lone
// write costs what it did; under load, one fsync serves many reports. A
// write that fails rolls back its savepoint only; a failed commit fails
// them all. Each caller learns its own outcome after the commit, so an ack
// still follows durability.
type group struct {
	reqs chan *groupReq
	quit chan struct{}
	done chan struct{}
	stop sync.Once

	commits, writes atomic.Int64
}

type groupReq struct {
	ctx context.Context
	fn  func(Tx) error
	err chan error
}

func (s *Store) startGroup() {
	s.group = &group{reqs: make(chan *groupReq), quit: make(chan struct{}), done: make(chan struct{})}
	go s.runGroup()
}

// stopGroup ends the writer; writes submitted after it fail.
func (s *Store) stopGroup() {
	if s.group == nil {
		return
	}
	s.group.stop.Do(func() { close(s.group.quit) })
	<-s.group.done
}

// write runs fn in a write transaction: a group's when the dialect commits
// in groups, its own otherwise.
func (s *Store) write(ctx context.Context, fn func(Tx) error) error {
	if s.group == nil {
		tx, err := s.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.Commit()
	}
	r := &groupReq{ctx: ctx, fn: fn, err: make(chan error, 1)}
	select {
	case s.group.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.group.quit:
		return errClosed
	}
	return <-r.err
}

func (s *Store) runGroup() {
	defer close(s.group.done)
	for {
		var first *groupReq
		select {
		case first = <-s.group.reqs:
		case <-s.group.quit:
			return
		}
		batch := []*groupReq{first}
	more:
		for len(batch) < maxGroup {
			select {
			case r := <-s.group.reqs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		s.commitGroup(batch)
	}
}

func (s *Store) commitGroup(batch []*groupReq) {
	errs := make([]error, len(batch))
	defer func() {
		for i, r := range batch {
			r.err <- errs[i]
		}
	}()
	// The transaction belongs to no one caller: a caller that gives up
	// fails its own write only.
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return
	}
	defer tx.Rollback()
	applied := 0
	for i, r := range batch {
		if errs[i] = r.ctx.Err(); errs[i] != nil {
			continue
		}
		if len(batch) == 1 {
			errs[i] = r.fn(tx)
			if errs[i] != nil {
				return
			}
			applied++
			continue
		}
		if _, err := tx.ExecContext(ctx, `SAVEPOINT w`); err != nil {
			errs[i] = err
			continue
		}
		if errs[i] = r.fn(tx); errs[i] != nil {
			if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT w`); err != nil {
				// The transaction is unusable: fail what is left.
				for j := range errs {
					if errs[j] == nil {
						errs[j] = err
					}
				}
				return
			}
		}
		if _, err := tx.ExecContext(ctx, `RELEASE SAVEPOINT w`); err != nil && errs[i] == nil {
			errs[i] = err
		}
		if errs[i] == nil {
			applied++
		}
	}
	if applied == 0 {
		return
	}
	s.group.commits.Add(1)
	s.group.writes.Add(int64(applied))
	if err := tx.Commit(); err != nil {
		for i := range errs {
			if errs[i] == nil {
				errs[i] = err
			}
		}
	}
}

// GroupStats returns how many group transactions were committed and how
// many writes they held (0, 0 without group commit).
func (s *Store) GroupStats() (commits, writes int64) {
	if s.group == nil {
		return 0, 0
	}
	return s.group.commits.Load(), s.group.writes.Load()
}
