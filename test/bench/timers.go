//go:build linux

package main

import (
	"context"
	"database/sql"
	"fmt"
	"math"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" driver, as the PostgreSQL store uses it

	"github.com/evident-dev/evident/server/store/postgres/pgtest"
)

// benchTimers measures what a PostgreSQL statement costs the server's
// process beside the timers its agents' connections hold. grpc-go's
// keepalive goroutine waits on three timers per connection; pgx arms a
// 15 ms timer around every write to the database and stops it after, and
// the Go runtime walks every timer of a P when such a modified timer comes
// due (golang/go#41699). So the same statement costs more CPU the more
// agents are connected. Each row asks for 3,000 statements a second
// (SELECT 1 on 4 connections, paced; the rate reached is printed: about
// 2,300 here, the statements of 170 reports a second, 50,000 agents every
// 5 minutes) for 10 s beside conns connections' worth of idle timers.
func benchTimers(conns []int) {
	fmt.Println("PostgreSQL statements beside the timers of idle agent connections (grpc-go: 3 per connection; pgx: one armed per write)")
	db, err := sql.Open("pgx", pgtest.ServerURL())
	if err != nil {
		fail(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	if err := db.Ping(); err != nil {
		fail(fmt.Errorf("PostgreSQL at %s: %w", pgtest.ServerURL(), err))
	}
	var base float64
	for _, n := range conns {
		done := make(chan struct{})
		for range n {
			go func() { // as grpc-go's http2Server.keepalive
				idle, age, kp := time.NewTimer(time.Duration(math.MaxInt64)), time.NewTimer(time.Duration(math.MaxInt64)), time.NewTimer(5*time.Minute)
				defer idle.Stop()
				defer age.Stop()
				defer kp.Stop()
				select {
				case <-idle.C:
				case <-age.C:
				case <-kp.C:
				case <-done:
				}
			}()
		}
		time.Sleep(time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		stmts := make(chan int, 4)
		c0, w0 := cpuTime(), time.Now()
		for range 4 {
			go func() {
				k := 0
				pace := time.NewTicker(4 * time.Second / 3000)
				defer pace.Stop()
				for ctx.Err() == nil {
					<-pace.C
					if _, err := db.ExecContext(context.Background(), `SELECT 1`); err != nil {
						fail(err)
					}
					k++
				}
				stmts <- k
			}()
		}
		total := 0
		for range 4 {
			total += <-stmts
		}
		cancel()
		cpu, wall := cpuTime()-c0, time.Since(w0)
		close(done)
		per := float64(cpu.Microseconds()) / float64(total)
		if n == 0 {
			base = per
		}
		fmt.Printf("  %6d connections' timers: %5.0f statements/s, %5.1f µs of CPU per statement (%s of the same without them), %4.1f %% of a core\n",
			n, float64(total)/wall.Seconds(), per, ratio(per, base), 100*cpu.Seconds()/wall.Seconds())
	}
	fmt.Println()
}
