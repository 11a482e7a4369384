//go:build linux

package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	_ "modernc.org/sqlite" // the raw SQLite limit writes through the same driver as the store

	"github.com/evident-dev/evident/internal/cli"
	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/postgres"
	"github.com/evident-dev/evident/server/store/postgres/pgtest"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// scaleArg runs the scale table (make bench-scale) instead of one load.
const scaleArg = "scale"

// scaleOptions are the flags of `load scale`.
type scaleOptions struct {
	sizes     []int
	stores    []string
	pgURL     string
	bin       string
	interval  time.Duration
	steady    time.Duration
	enrollEst float64 // devices/s assumed to size each run's duration
	satDev    int
	rawRows   int
}

func parseScale(args []string, stderr io.Writer) (scaleOptions, error) {
	o := scaleOptions{}
	fs := cli.NewFlagSet("load scale", stderr, `load scale: the fleet-scale table (make bench-scale). For each store and each fleet size it
starts a fresh store and ceil(N/15000) server replicas, runs the load generator (every device
enrolled through the Enrollment RPC, one mTLS stream each), and prints one row: server RSS per
stream, server CPU per report (for PostgreSQL the database's own CPU too), ack latency p50/p99,
enrollment rate; then a saturation run (few devices, short interval) for observations/s, and in
the same run the raw write limit of the same observation rows: SQLite batched INSERT and
PostgreSQL COPY, with our ratio to it.`)
	sizes := fs.String("sizes", "1000,10000,50000", "comma-separated fleet sizes")
	stores := fs.String("stores", "sqlite,postgres", "comma-separated stores: sqlite, postgres")
	fs.StringVar(&o.pgURL, "pg", "postgres://postgres@127.0.0.1:5432/test?sslmode=disable", "PostgreSQL server for the postgres rows (each run gets a fresh schema, dropped after)")
	fs.StringVar(&o.bin, "bin", "bin/evident-server", "the evident-server binary")
	fs.DurationVar(&o.interval, "interval", 5*time.Minute, "each device's report interval in the size runs")
	fs.DurationVar(&o.steady, "steady", 90*time.Second, "how long each size run sends after the expected end of enrollment")
	fs.Float64Var(&o.enrollEst, "enroll-rate", 100, "devices/s assumed when sizing a run's duration (enrollment + -steady)")
	fs.IntVar(&o.satDev, "saturate-devices", 500, "devices of the saturation run (every 1s, window 4, 60s)")
	fs.IntVar(&o.rawRows, "raw-rows", 200000, "observation rows written for each raw limit")
	if err := cli.Parse(fs, args); err != nil {
		return o, err
	}
	for _, s := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > maxDevices {
			return o, fmt.Errorf("-sizes: %q is not a fleet size from 1 to %d", s, maxDevices)
		}
		o.sizes = append(o.sizes, n)
	}
	for _, s := range strings.Split(*stores, ",") {
		switch s = strings.TrimSpace(s); s {
		case "sqlite", "postgres":
			o.stores = append(o.stores, s)
		default:
			return o, fmt.Errorf("-stores: unknown store %q (sqlite, postgres)", s)
		}
	}
	if o.enrollEst <= 0 || o.steady <= 0 || o.interval <= 0 || o.satDev < 1 || o.rawRows < 1000 {
		return o, errors.New("-enroll-rate, -steady and -interval must be positive, -saturate-devices at least 1, -raw-rows at least 1000")
	}
	return o, nil
}

func runScale(args []string, stdout, stderr io.Writer) int {
	o, err := parseScale(args, stderr)
	if err != nil {
		return cli.ExitCode("load scale", err, stderr)
	}
	self, err := os.Executable()
	if err != nil {
		return cli.ExitCode("load scale", err, stderr)
	}
	cycles, err := loadCycles("test/e2e/testdata/snapshots")
	if err != nil {
		return cli.ExitCode("load scale", err, stderr)
	}
	tmpls, err := decodeCycles(cycles)
	if err != nil {
		return cli.ExitCode("load scale", err, stderr)
	}
	failed := false
	var errorLines []string // the size runs' errors by kind, printed under their table
	fmt.Fprintf(stdout, "Fleet scale (%s, %d CPUs): every device enrolled through the Enrollment RPC, one mTLS stream each, a replayed 8-observation cycle every %s, window 4\n\n",
		time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), o.interval)
	fmt.Fprintln(stdout, "(server CPU per report: evident-server after enrollment; PostgreSQL's own CPU over the whole run, enrollment included, per report)")
	fmt.Fprintln(stdout, "| store | streams | replicas | server RSS per stream | server CPU per report | ack p50 / p99 (after enrollment) | enrollment | stored = acked |")
	fmt.Fprintln(stdout, "|---|---:|---:|---:|---:|---:|---:|---|")
	for _, st := range o.stores {
		for _, n := range o.sizes {
			dur := time.Duration(float64(n)/o.enrollEst*float64(time.Second)) + o.steady
			row, err := scaleRun(o, self, st, n, []string{"-interval", o.interval.String(), "-duration", dur.Round(time.Second).String()}, stderr)
			if err != nil {
				failed = true
				fmt.Fprintf(stdout, "| %s | %d | | failed: %v | | | | |\n", st, n, err)
				continue
			}
			fmt.Fprintln(stdout, row.line())
			failed = failed || !row.sum.ExactlyOnce.OK
			if k := row.errorKinds(); k != "" {
				errorLines = append(errorLines, fmt.Sprintf("- %s, %d devices: %s", st, n, k))
			}
		}
	}
	if len(errorLines) > 0 {
		fmt.Fprintf(stdout, "\nErrors by kind (the generator's count; a device retries each with the agent's backoff):\n%s\n", strings.Join(errorLines, "\n"))
	}
	fmt.Fprintf(stdout, "\nSaturation and the raw write limit of the same rows (%d devices every 1s, window 4, 60s; raw: %d observation rows)\n\n", o.satDev, o.rawRows)
	fmt.Fprintln(stdout, "| store | observations/s acked (saturated) | server CPU per report | raw limit, same rows | rows/s | ratio |")
	fmt.Fprintln(stdout, "|---|---:|---:|---|---:|---:|")
	for _, st := range o.stores {
		row, err := scaleRun(o, self, st, o.satDev, []string{"-interval", "1s", "-duration", "60s", "-window", "4"}, stderr)
		var raw float64
		var rawName string
		if err == nil {
			raw, rawName, err = rawLimit(o, st, tmpls)
		}
		if err != nil {
			failed = true
			fmt.Fprintf(stdout, "| %s | failed: %v | | | | |\n", st, err)
			continue
		}
		obs := row.sum.ObservationsPerS
		if row.sum.After != nil {
			obs = float64(row.sum.After.ReportsPerS) * float64(row.sum.Observations) / math.Max(1, float64(row.sum.Reports))
		}
		fmt.Fprintf(stdout, "| %s | %.0f | %.2f ms | %s | %.0f | %.3f |\n", st, obs, row.cpuPerReport(), rawName, raw, obs/raw)
	}
	if failed {
		return 1
	}
	return 0
}

// scaleRow is one run's summary and the database's CPU during it.
type scaleRow struct {
	store  string
	sum    summary
	dbCPU  time.Duration
	nodes  int
	length time.Duration
}

func (r scaleRow) cpuPerReport() float64 {
	if r.sum.Server == nil || r.sum.Reports == 0 {
		return 0
	}
	return (r.sum.Server.CPUS + r.dbCPU.Seconds()) * 1000 / float64(r.sum.Reports)
}

func (r scaleRow) line() string {
	s := r.sum
	rss, cpu := "n/a", "n/a"
	if s.Server != nil {
		rss = fmt.Sprintf("%.0f KiB", s.Server.RSSPerStreamKiB)
		// After enrollment when there was an after: enrollment's own CPU
		// is the enrollment column's business.
		ms := s.Server.CPUS * 1000 / math.Max(1, float64(s.Reports))
		if s.After != nil && s.After.ServerCPUPerReportMs > 0 {
			ms = s.After.ServerCPUPerReportMs
		}
		cpu = fmt.Sprintf("%.2f ms", ms)
		if r.store == "postgres" {
			cpu += fmt.Sprintf(" + PostgreSQL %.2f ms", r.dbCPU.Seconds()*1000/math.Max(1, float64(s.Reports)))
		}
	}
	p50, p99 := s.AckP50Ms, s.AckP99Ms
	if s.After != nil {
		p50, p99 = s.After.AckP50Ms, s.After.AckP99Ms
	}
	once := "yes"
	if !s.ExactlyOnce.OK {
		once = "NO: " + s.ExactlyOnce.Message
	}
	return fmt.Sprintf("| %s | %d | %d | %s | %s | %.0f / %.0f ms | %.0f devices/s | %s |",
		r.store, s.PeakStreams, r.nodes, rss, cpu, p50, p99, s.EnrollPerS, once)
}

// errorKinds lists the run's errors by kind, the most frequent first
// ("stream: Unavailable 1,204; enroll: DeadlineExceeded 3"), or "".
func (r scaleRow) errorKinds() string {
	kinds := make([]string, 0, len(r.sum.Errors))
	for k, n := range r.sum.Errors {
		if n > 0 {
			kinds = append(kinds, k)
		}
	}
	sort.Slice(kinds, func(i, j int) bool {
		a, b := r.sum.Errors[kinds[i]], r.sum.Errors[kinds[j]]
		return a > b || a == b && kinds[i] < kinds[j]
	})
	for i, k := range kinds {
		kinds[i] = fmt.Sprintf("%s %d", k, r.sum.Errors[k])
	}
	return strings.Join(kinds, "; ")
}

// scaleRun runs the load generator once on a fresh store of kind st with
// n devices and returns its summary. PostgreSQL's CPU (every postgres
// process of this machine) is read around the run.
func scaleRun(o scaleOptions, self, st string, n int, extra []string, stderr io.Writer) (scaleRow, error) {
	replicas := max(1, (n+14999)/15000)
	args := append([]string{"-devices", strconv.Itoa(n), "-spawn", strconv.Itoa(replicas), "-bin", o.bin, "-json"}, extra...)
	if st == "postgres" {
		u, drop, err := pgtest.Schema(context.Background(), o.pgURL, "evident_scale_")
		if err != nil {
			return scaleRow{}, err
		}
		defer drop()
		args = append(args, "-store", u)
	}
	fmt.Fprintf(stderr, "load scale: %s, %d devices, %d replica(s): load %s\n", st, n, replicas, strings.Join(args, " "))
	db0 := postgresCPU()
	cmd := exec.Command(self, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, stderr
	t0 := time.Now()
	runErr := cmd.Run()
	row := scaleRow{store: st, nodes: replicas, length: time.Since(t0)}
	if st == "postgres" {
		row.dbCPU = postgresCPU() - db0
	}
	if err := json.Unmarshal(out.Bytes(), &row.sum); err != nil {
		if runErr != nil {
			return row, runErr
		}
		return row, fmt.Errorf("the load generator printed no summary: %w", err)
	}
	return row, nil
}

// postgresCPU is the CPU time of every postgres process on this machine
// (the database serving a local run, its background writers included),
// with the backends that have exited: read only from the live processes,
// it missed every backend of the run, closed when its servers stopped.
func postgresCPU() time.Duration {
	var total time.Duration
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "comm"))
		if strings.TrimSpace(string(comm)) != "postgres" {
			continue
		}
		total += procTreeCPU(pid)
	}
	return total
}

// rawLimit writes o.rawRows observation rows (the replayed cycles, as the
// store keeps them) straight into a fresh store's observations table: for
// SQLite, batched INSERTs of 500 rows per transaction with the server's
// durability (WAL, synchronous=FULL); for PostgreSQL, COPY of 5,000 rows per
// transaction. It returns rows/s and what was measured.
func rawLimit(o scaleOptions, st string, tmpls []template) (float64, string, error) {
	ctx := context.Background()
	rows := make([][]any, 0, o.rawRows)
	now := time.Now().UTC().UnixNano()
	for i := 0; len(rows) < o.rawRows; i++ {
		for _, ob := range tmpls[i%len(tmpls)].obs {
			if len(rows) == o.rawRows {
				break
			}
			rows = append(rows, []any{"raw-device", int64(len(rows) + 1), ob.GetCollector(), now, now, false, "ok", "",
				int(ob.GetParserVersion()), ob.GetPayloadJson(), []byte(`[]`), int64(0)})
		}
	}
	cols := []string{"device_id", "seq", "collector", "collected_at", "received_at", "clock_skew", "status", "error",
		"parser_version", "payload", "sources", "duration_ms"}
	dev := store.Device{ID: "raw-device", Hostname: "raw", EnrolledAt: time.Now()}
	switch st {
	case "sqlite":
		dir, err := os.MkdirTemp("", "evident-raw")
		if err != nil {
			return 0, "", err
		}
		defer os.RemoveAll(dir)
		path := filepath.Join(dir, "evident.db")
		if err := withDevice(ctx, dev, func() (store.Store, error) { return sqlite.Open(path, false) }); err != nil {
			return 0, "", err
		}
		db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
		if err != nil {
			return 0, "", err
		}
		defer db.Close()
		db.SetMaxOpenConns(1)
		q := `INSERT INTO observations (` + strings.Join(cols, ", ") + `) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`
		t0 := time.Now()
		for i := 0; i < len(rows); i += 500 {
			tx, err := db.Begin()
			if err != nil {
				return 0, "", err
			}
			stmt, err := tx.Prepare(q)
			if err != nil {
				tx.Rollback()
				return 0, "", err
			}
			for _, r := range rows[i:min(i+500, len(rows))] {
				if _, err := stmt.Exec(r...); err != nil {
					tx.Rollback()
					return 0, "", err
				}
			}
			stmt.Close()
			if err := tx.Commit(); err != nil {
				return 0, "", err
			}
		}
		return float64(len(rows)) / time.Since(t0).Seconds(), "SQLite batched INSERT (500 rows a transaction)", nil
	default:
		u, drop, err := pgtest.Schema(ctx, o.pgURL, "evident_scale_")
		if err != nil {
			return 0, "", err
		}
		defer drop()
		if err := withDevice(ctx, dev, func() (store.Store, error) { return postgres.Open(ctx, u, false) }); err != nil {
			return 0, "", err
		}
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			return 0, "", err
		}
		defer conn.Close(ctx)
		t0 := time.Now()
		for i := 0; i < len(rows); i += 5000 {
			if _, err := conn.CopyFrom(ctx, pgx.Identifier{"observations"}, cols, pgx.CopyFromRows(rows[i:min(i+5000, len(rows))])); err != nil {
				return 0, "", err
			}
		}
		return float64(len(rows)) / time.Since(t0).Seconds(), "PostgreSQL COPY (5,000 rows a transaction)", nil
	}
}

// withDevice creates a store's schema (by opening it as the server does) and
// the device the raw rows belong to.
func withDevice(ctx context.Context, dev store.Device, open func() (store.Store, error)) error {
	s, err := open()
	if err != nil {
		return err
	}
	defer s.Close()
	_, err = s.EnrollDevice(ctx, dev)
	return err
}
