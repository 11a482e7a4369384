//go:build linux

package main

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/evident-dev/evident/server/controls"
	"github.com/evident-dev/evident/server/states"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
	"github.com/evident-dev/evident/server/web"
)

// benchReadPath measures what an auditor's browser and an API client wait
// for (the handler's whole work: store reads, template, JSON) on fleets of
// each size, every device with the 9 controls of the default policy and a
// history of intervals recorded through the real store. The raw limit is
// the same 50-row index read straight from SQLite.
func benchReadPath(dir string, sizes []int) {
	if only := os.Getenv("EVIDENT_BENCH_PAGE"); only != "" {
		readPathOnly = only
	}
	fmt.Println("Read path (web UI and API, SQLite): median of repeated requests served in-process")
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		// Building 100k devices commits ~300k transactions: on tmpfs the
		// setup takes a minute instead of the disk's fsyncs. The reads
		// measured do not fsync.
		if d, err := os.MkdirTemp("/dev/shm", "evident-bench"); err == nil {
			defer os.RemoveAll(d)
			dir = d
		}
	}
	p := controls.Default()
	pages := []string{"fleet overview", "device list, first page", "device list, deep page", "device list, control=fail",
		"device list, hostname prefix", "device page", "API /api/v1/devices", "API /api/v1/fleet", "raw SQLite 50-row page"}
	results := map[int][]time.Duration{}
	for _, n := range sizes {
		path := filepath.Join(dir, fmt.Sprintf("read-%d.db", n))
		start := time.Now()
		st, tok, sess, mid, err := buildFleet(path, p, n)
		if err != nil {
			fail(fmt.Errorf("read path: build %d devices: %w", n, err))
		}
		fmt.Printf("  %d devices × %d controls built in %s\n", n, len(p.Controls), time.Since(start).Round(time.Second))
		deep, err := deepCursor(st, n*9/10)
		if err != nil {
			fail(err)
		}
		srv, err := web.New(web.Config{Store: st, Policy: p, Now: func() time.Time { return benchNow }})
		if err != nil {
			fail(err)
		}
		paths := []string{"/", "/devices", "/devices?cursor=" + url.QueryEscape(deep), "/devices?control=DC-FW-01&status=fail",
			"/devices?q=host-0001", "/devices/" + mid, "/api/v1/devices", "/api/v1/fleet"}
		var row []time.Duration
		for _, pth := range paths {
			if readPathOnly != "" && !strings.Contains(pth, readPathOnly) {
				row = append(row, time.Nanosecond)
				continue
			}
			row = append(row, timeMedian(func() error { return get(srv, pth, tok, sess) }))
		}
		st.Close()
		raw, err := rawPage(path)
		if err != nil {
			fail(err)
		}
		results[n] = append(row, raw)
	}
	fmt.Printf("  %-30s", "page")
	for _, n := range sizes {
		fmt.Printf(" %12s", fmt.Sprintf("%d", n))
	}
	fmt.Printf(" %14s\n", fmt.Sprintf("%dk/%dk", sizes[len(sizes)-1]/1000, sizes[0]/1000))
	for i, name := range pages {
		fmt.Printf("  %-30s", name)
		for _, n := range sizes {
			fmt.Printf(" %12s", fmtDur(results[n][i]))
		}
		ratio := float64(results[sizes[len(sizes)-1]][i]) / float64(results[sizes[0]][i])
		fmt.Printf(" %14.2f\n", ratio)
	}
	fmt.Println()
}

// readPathOnly, from EVIDENT_BENCH_PAGE, limits the pages timed to those
// whose path contains it (for a profile of one page).
var readPathOnly string

var benchNow = time.Date(2026, 6, 30, 12, 0, 0, 0, time.UTC)

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// timeMedian runs fn until 1 s or 200 runs have passed (at least 5) and
// returns the median duration.
func timeMedian(fn func() error) time.Duration {
	var ds []time.Duration
	begin := time.Now()
	for len(ds) < 5 || (len(ds) < 200 && time.Since(begin) < time.Second) {
		t := time.Now()
		if err := fn(); err != nil {
			fail(err)
		}
		ds = append(ds, time.Since(t))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func get(h http.Handler, path, token, session string) error {
	req := httptest.NewRequest("GET", path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.AddCookie(&http.Cookie{Name: "evident_session", Value: session})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		return fmt.Errorf("GET %s = %d: %.300s", path, w.Code, w.Body.String())
	}
	return nil
}

// buildFleet enrolls n devices and records three evaluations each over two
// months (a status of each control drawn per evaluation), through the
// store's own methods; it returns an auditor token and session, and the
// id of a device in the middle.
func buildFleet(path string, p *controls.Policy, n int) (*sqlite.Store, string, string, string, error) {
	st, err := sqlite.Open(path, false)
	if err != nil {
		return nil, "", "", "", err
	}
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	oses := []string{"linux", "darwin", "windows"}
	t0 := benchNow.AddDate(0, -2, 0)
	var mid string
	for i := range n {
		id := fmt.Sprintf("dev_%032x", rng.Uint64())
		if i == n/2 {
			mid = id
		}
		d := store.Device{ID: id, Hostname: fmt.Sprintf("host-%07d", rng.IntN(10*n)), GOOS: oses[i%3], OSVersion: "12",
			MachineID: "m-" + id, EnrolledAt: t0.Add(time.Duration(rng.IntN(24*3600)) * time.Second)}
		if _, err := st.EnrollDevice(ctx, d); err != nil {
			return nil, "", "", "", err
		}
		for k, at := range []time.Time{d.EnrolledAt, d.EnrolledAt.AddDate(0, 0, 20+rng.IntN(10)), benchNow.Add(-time.Duration(rng.IntN(48)) * time.Hour)} {
			next := make([]store.ControlState, len(p.Controls))
			for j, c := range p.Controls {
				status := store.Unknown
				if k > 0 {
					status = []string{store.Pass, store.Pass, store.Pass, store.Fail, store.Unknown, store.NotApplicable}[rng.IntN(6)]
				}
				next[j] = store.ControlState{ControlID: c.ID, Status: status, Reason: "synthetic " + status,
					Evidence: []byte(`{"collector":"synthetic","seq":1}`)}
			}
			if err := states.Record(ctx, st, id, next, []string{oses[i%3]}, at); err != nil {
				return nil, "", "", "", err
			}
		}
	}
	tok, tid, hash := web.NewToken()
	if err := st.CreateToken(ctx, store.Token{ID: tid, Hash: hash, Role: store.RoleAuditor, CreatedAt: t0}); err != nil {
		return nil, "", "", "", err
	}
	sess, _, shash := web.NewToken()
	if err := st.CreateSession(ctx, store.Session{Hash: shash, TokenID: tid, CreatedAt: benchNow.Add(-time.Hour), ExpiresAt: benchNow.Add(time.Hour)}); err != nil {
		return nil, "", "", "", err
	}
	return st, tok, sess, mid, nil
}

// deepCursor is the cursor of the page starting at position at.
func deepCursor(st store.Posture, at int) (string, error) {
	q := store.DeviceQuery{Limit: store.MaxPageSize}
	for seen := 0; seen+q.Limit <= at; {
		page, err := st.DevicePage(context.Background(), q)
		if err != nil || page.Next == "" {
			return q.After, err
		}
		seen += len(page.Devices)
		q.After = page.Next
	}
	return q.After, nil
}

// rawPage times the device list's index read alone: 50 rows in hostname
// order, straight through database/sql.
func rawPage(path string) (time.Duration, error) {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	return timeMedian(func() error {
		rows, err := db.Query(`SELECT id, hostname, goos, last_seen_at FROM devices ORDER BY hostname COLLATE NOCASE, id LIMIT 50`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, h, g string
			var seen sql.NullInt64
			if err := rows.Scan(&id, &h, &g, &seen); err != nil {
				return err
			}
		}
		return rows.Err()
	}), nil
}
