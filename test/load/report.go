//go:build linux

package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// sampler reads the workers' totals and the servers' /proc figures once a
// second, and prints progress.
type sampler struct {
	o       options
	agg     *aggregate
	servers *fleet
	start   time.Time
	out     io.Writer

	cur                  stats
	rssKiB, grownKiB     int64
	serverCPU            time.Duration
	peakStreams          int64
	peakRSSKiB           int64
	perStreamKiB         float64   // server RSS growth per stream at the peak
	enrolledAt           time.Time // first sample with every enrollment done
	atEnrolled           stats
	cpuAtEnrolled        time.Duration // the servers' CPU then
	last                 stats         // at the last progress line
	lastAt               time.Time
	lastServerCPU        time.Duration
	lastGeneratorCPUTime time.Duration
}

func (s *sampler) sample() {
	s.cur = s.agg.total()
	if s.servers != nil {
		s.rssKiB, s.grownKiB, s.serverCPU = s.servers.usage()
		s.peakRSSKiB = max(s.peakRSSKiB, s.rssKiB)
	}
	if s.enrolledAt.IsZero() && s.cur.Enrolled+s.cur.EnrollFailed >= int64(s.o.devices) {
		s.enrolledAt, s.atEnrolled, s.cpuAtEnrolled = time.Unix(0, s.cur.At), s.cur, s.serverCPU
	}
	if s.cur.Streams > 0 && s.cur.Streams >= s.peakStreams {
		s.peakStreams = s.cur.Streams
		s.perStreamKiB = float64(s.grownKiB) / float64(s.cur.Streams)
	}
}

// print writes one progress line: rates and latencies over the time since
// the previous line.
func (s *sampler) print(now time.Time) {
	if s.lastAt.IsZero() {
		s.lastAt = s.start
	}
	dt := now.Sub(s.lastAt).Seconds()
	c, l := s.cur, s.last
	lat := c.Latency
	lat.sub(&l.Latency)
	over, other := c.errorTotals()
	line := fmt.Sprintf("%6s  streams %d/%d  enrolled %d (%.0f/s)  acked %.1f reports/s, %.0f obs/s  ack p50 %s p99 %s  errors %d, overloaded %d",
		now.Sub(s.start).Round(time.Second), c.Streams, s.o.devices, c.Enrolled, float64(c.Enrolled-l.Enrolled)/dt,
		float64(c.Reports-l.Reports)/dt, float64(c.Observations-l.Observations)/dt,
		ms(lat.quantile(0.5)), ms(lat.quantile(0.99)), other, over)
	if s.servers != nil {
		cpu := s.serverCPU - s.lastServerCPU
		perStream := "-"
		if c.Streams > 0 {
			perStream = kib(float64(s.grownKiB) / float64(c.Streams))
		}
		line += fmt.Sprintf("  servers %s (+%s/stream), CPU %.0f%%, %s/report",
			mib(s.rssKiB), perStream, 100*cpu.Seconds()/dt, perReport(cpu, c.Reports-l.Reports))
	}
	line += fmt.Sprintf("  load CPU %.0f%%", 100*(c.CPU-s.lastGeneratorCPUTime).Seconds()/dt)
	fmt.Fprintln(s.out, line)
	s.last, s.lastAt, s.lastServerCPU, s.lastGeneratorCPUTime = c, now, s.serverCPU, c.CPU
}

// summary is the run's result; -json prints it as is.
type summary struct {
	Devices        int      `json:"devices"`
	Targets        []string `json:"targets"`
	SpawnedServers int      `json:"spawned_servers"`
	Procs          int      `json:"procs"`
	IntervalS      float64  `json:"interval_s"`
	Window         int      `json:"window"`
	DurationS      float64  `json:"duration_s"`
	ElapsedS       float64  `json:"elapsed_s"`
	// Interrupted: a signal stopped the run before -duration.
	Interrupted bool `json:"interrupted"`

	Enrolled      int64   `json:"enrolled"`
	EnrollFailed  int64   `json:"enroll_failed"`
	EnrollS       float64 `json:"enroll_s"` // from the start to the last enrollment
	EnrollPerS    float64 `json:"enroll_per_s"`
	EnrollP50Ms   float64 `json:"enroll_p50_ms"`
	EnrollP99Ms   float64 `json:"enroll_p99_ms"`
	PeakStreams   int64   `json:"peak_streams"`
	ClosedCleanly int64   `json:"closed_cleanly"`

	Sent               int64   `json:"reports_sent"`
	Reports            int64   `json:"reports_acked"`
	Observations       int64   `json:"observations_acked"`
	ReportsPerS        float64 `json:"reports_per_s"`
	ObservationsPerS   float64 `json:"observations_per_s"`
	ExpectedReportsPer float64 `json:"expected_reports_per_s"` // devices / interval
	AckP50Ms           float64 `json:"ack_p50_ms"`
	AckP99Ms           float64 `json:"ack_p99_ms"`
	AckMaxMs           float64 `json:"ack_max_ms"`
	// After is the same from the first second every device was enrolled
	// (enrollments compete with reports for the store) to the end.
	After *phase `json:"after_enrollment,omitempty"`

	Errors     map[string]int64 `json:"errors"`
	Overloaded int64            `json:"overloaded"`
	OtherErrs  int64            `json:"other_errors"`

	Server    *serverFigures `json:"server,omitempty"`
	Generator struct {
		CPUS   float64 `json:"cpu_s"`
		RSSMiB float64 `json:"rss_mib"`
	} `json:"generator"`

	ExactlyOnce exactlyOnce `json:"exactly_once"`
}

// phase is the reports and their ack latency over part of the run.
type phase struct {
	Seconds     float64 `json:"s"`
	Reports     int64   `json:"reports_acked"`
	ReportsPerS float64 `json:"reports_per_s"`
	AckP50Ms    float64 `json:"ack_p50_ms"`
	AckP99Ms    float64 `json:"ack_p99_ms"`
	// ServerCPUPerReportMs is the spawned servers' CPU over the phase per
	// report acked in it.
	ServerCPUPerReportMs float64 `json:"server_cpu_per_report_ms,omitempty"`
}

// serverFigures are the spawned replicas' figures, summed.
type serverFigures struct {
	Replicas        int     `json:"replicas"`
	PeakRSSMiB      float64 `json:"peak_rss_mib"`
	RSSPerStreamKiB float64 `json:"rss_per_stream_kib"` // growth over the baseline, at the most streams
	CPUS            float64 `json:"cpu_s"`
	CPUCores        float64 `json:"cpu_cores"` // CPU seconds per second of the run
	CPUPerReportMs  float64 `json:"cpu_per_report_ms"`
}

func (s *sampler) summary(elapsed time.Duration, t target) summary {
	c := s.cur
	sum := summary{Devices: s.o.devices, Targets: t.addrs, SpawnedServers: s.o.spawn, Procs: s.o.procs,
		IntervalS: s.o.interval.Seconds(), Window: s.o.window, DurationS: s.o.duration.Seconds(), ElapsedS: elapsed.Seconds(),
		Enrolled: c.Enrolled, EnrollFailed: c.EnrollFailed, PeakStreams: s.peakStreams, ClosedCleanly: c.Closed,
		Sent: c.Sent, Reports: c.Reports, Observations: c.Observations,
		ReportsPerS: float64(c.Reports) / elapsed.Seconds(), ObservationsPerS: float64(c.Observations) / elapsed.Seconds(),
		ExpectedReportsPer: float64(s.o.devices) / s.o.interval.Seconds(),
		AckP50Ms:           msf(c.Latency.quantile(0.5)), AckP99Ms: msf(c.Latency.quantile(0.99)), AckMaxMs: msf(c.Latency.quantile(1)),
		Errors: c.Errors, EnrollP50Ms: msf(c.EnrollLatency.quantile(0.5)), EnrollP99Ms: msf(c.EnrollLatency.quantile(0.99)),
	}
	if sum.Errors == nil {
		sum.Errors = map[string]int64{}
	}
	sum.Overloaded, sum.OtherErrs = c.errorTotals()
	if c.LastEnrolled > 0 {
		sum.EnrollS = time.Unix(0, c.LastEnrolled).Sub(s.start).Seconds()
		sum.EnrollPerS = float64(c.Enrolled) / max(sum.EnrollS, 1e-3)
	}
	if !s.enrolledAt.IsZero() {
		lat := c.Latency
		lat.sub(&s.atEnrolled.Latency)
		d := s.start.Add(elapsed).Sub(s.enrolledAt).Seconds()
		n := c.Reports - s.atEnrolled.Reports
		sum.After = &phase{Seconds: d, Reports: n, ReportsPerS: float64(n) / max(d, 1e-3),
			AckP50Ms: msf(lat.quantile(0.5)), AckP99Ms: msf(lat.quantile(0.99))}
		if s.servers != nil && n > 0 {
			sum.After.ServerCPUPerReportMs = msf(s.serverCPU-s.cpuAtEnrolled) / float64(n)
		}
	}
	sum.Generator.CPUS, sum.Generator.RSSMiB = c.CPU.Seconds(), float64(c.RSSKiB)/1024
	if s.servers != nil {
		sum.Server = &serverFigures{Replicas: len(s.servers.replicas), PeakRSSMiB: float64(s.peakRSSKiB) / 1024,
			RSSPerStreamKiB: s.perStreamKiB, CPUS: s.serverCPU.Seconds(), CPUCores: s.serverCPU.Seconds() / elapsed.Seconds()}
		if c.Reports > 0 {
			sum.Server.CPUPerReportMs = msf(s.serverCPU) / float64(c.Reports)
		}
	}
	sum.ExactlyOnce.Message = "exactly-once: not checked"
	return sum
}

func (sum summary) print(w io.Writer) {
	how := secs(sum.DurationS) + " sending, then the drain"
	if sum.Interrupted {
		how = "stopped early by a signal, then the drain"
	}
	fmt.Fprintf(w, "\nSummary: %d devices, %s run (%s), %d worker process(es)\n", sum.Devices, secs(sum.ElapsedS), how, sum.Procs)
	fmt.Fprintf(w, "  enrolled      %d of %d in %s (%.1f devices/s; Enroll call p50 %.1f ms, p99 %.1f ms)",
		sum.Enrolled, sum.Devices, secs(sum.EnrollS), sum.EnrollPerS, sum.EnrollP50Ms, sum.EnrollP99Ms)
	if sum.EnrollFailed > 0 {
		fmt.Fprintf(w, "; %d failed", sum.EnrollFailed)
	}
	fmt.Fprintf(w, "\n  streams       %d at the peak; %d closed cleanly at the end\n", sum.PeakStreams, sum.ClosedCleanly)
	fmt.Fprintf(w, "  acked         %d reports (%.1f/s; %.4g/s expected at steady state), %d observations (%.0f/s); %d reports sent, resends included\n",
		sum.Reports, sum.ReportsPerS, sum.ExpectedReportsPer, sum.Observations, sum.ObservationsPerS, sum.Sent)
	fmt.Fprintf(w, "  ack latency   p50 %.1f ms, p99 %.1f ms, max %.1f ms (Send of a report to its ack; bucket bounds, within 9 %%)\n",
		sum.AckP50Ms, sum.AckP99Ms, sum.AckMaxMs)
	if a := sum.After; a != nil {
		fmt.Fprintf(w, "  after enrollment (the last %s): %d reports acked (%.1f/s), ack p50 %.1f ms, p99 %.1f ms",
			secs(a.Seconds), a.Reports, a.ReportsPerS, a.AckP50Ms, a.AckP99Ms)
		if a.ServerCPUPerReportMs > 0 {
			fmt.Fprintf(w, ", server CPU %.2f ms per report", a.ServerCPUPerReportMs)
		}
		fmt.Fprintln(w)
	}
	e := stats{Errors: sum.Errors}
	fmt.Fprintf(w, "  errors        %d overload refusals, %d others: %s\n", sum.Overloaded, sum.OtherErrs, e.errorList())
	if s := sum.Server; s != nil {
		fmt.Fprintf(w, "  servers       %d replica(s): peak RSS %.1f MiB (%.1f KiB per stream over the idle server), CPU %.1f s (%.2f cores), %.2f ms per report enrollment included\n",
			s.Replicas, s.PeakRSSMiB, s.RSSPerStreamKiB, s.CPUS, s.CPUCores, s.CPUPerReportMs)
	}
	fmt.Fprintf(w, "  generator     CPU %.1f s, RSS %.1f MiB (all workers)\n", sum.Generator.CPUS, sum.Generator.RSSMiB)
	fmt.Fprintln(w, sum.ExactlyOnce.Message)
	for _, ex := range sum.ExactlyOnce.Examples {
		fmt.Fprintln(w, "  "+ex)
	}
}

// describeTargets names the servers in the first line.
func describeTargets(o options, t target, dataDir string) string {
	if o.spawn > 0 {
		return fmt.Sprintf("%d spawned server(s) %s (data dir %s)", o.spawn, strings.Join(t.addrs, ","), dataDir)
	}
	return "server(s) " + strings.Join(t.addrs, ",")
}

func describeCycles(cs []cycle) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s (%s, %d)", c.Host, c.GOOS, len(c.Obs)))
	}
	return fmt.Sprintf("%d host snapshots, observations per cycle: %s", len(cs), strings.Join(parts, ", "))
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func ms(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return strconv.FormatFloat(msf(d), 'f', 1, 64) + "ms"
}

func secs(s float64) string { return strconv.FormatFloat(s, 'f', 1, 64) + " s" }

func mib(k int64) string { return strconv.FormatFloat(float64(k)/1024, 'f', 1, 64) + " MiB" }

func kib(k float64) string { return strconv.FormatFloat(k, 'f', 1, 64) + " KiB" }

func perReport(cpu time.Duration, reports int64) string {
	if reports <= 0 {
		return "-"
	}
	return strconv.FormatFloat(msf(cpu)/float64(reports), 'f', 2, 64) + " ms"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
