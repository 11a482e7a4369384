// Package webui drives the web UI in a real headless Chromium (chromedp)
// against an in-process server with a seeded SQLite store: an auditor logs
// in by typing a token, reads the fleet, device and period pages, downloads
// the period CSV, and is refused an admin action. Each page is saved as a
// full-page PNG screenshot in the test's artifact directory.
//
// Chromium is /usr/bin/chromium when present, else `chromium` in PATH. Without
// it the test is skipped, except under CI=true, where that is a failure.
package webui
