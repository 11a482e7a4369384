package sqlite_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/evident-dev/evident/server/store"
	"github.com/evident-dev/evident/server/store/sqlite"
)

// FuzzDevicePage feeds the device list's client-controlled inputs (the page
// cursor, the hostname prefix, the sort) to a real store: never a panic, a
// bad cursor is ErrBadCursor, and a page never holds more than its limit.
func FuzzDevicePage(f *testing.F) {
	st, err := sqlite.Open(filepath.Join(f.TempDir(), "evident.db"), false)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	for i := range 5 {
		d := store.Device{ID: fmt.Sprintf("dev-%d", i), Hostname: fmt.Sprintf("Host-%d", i%3), EnrolledAt: t0}
		if _, err := st.EnrollDevice(f.Context(), d); err != nil {
			f.Fatal(err)
		}
	}
	first, err := st.DevicePage(f.Context(), store.DeviceQuery{Limit: 2})
	if err != nil {
		f.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	for _, seed := range []struct{ cursor, host, sort string }{
		{first.Next, "", ""},
		{"", "host", store.SortLastSeen},
		{b64([]byte(`{"s":"last_seen","k":1e300,"i":"x"}`)), "", store.SortLastSeen},
		{b64([]byte(`{"s":"hostname","k":["a"],"i":"x"}`)), "", ""},
		{b64([]byte(`{"s":"hostname","k":"\u0000","i":"\xff"}`)), "%_\\", ""},
		{"!!", "\U0010FFFF", "nope"},
	} {
		f.Add(seed.cursor, seed.host, seed.sort)
	}
	f.Fuzz(func(t *testing.T, cursor, host, sort string) {
		q := store.DeviceQuery{After: cursor, Hostname: host, Sort: sort, Limit: 2}
		page, err := st.DevicePage(t.Context(), q)
		switch {
		case err == nil:
			if len(page.Devices) > 2 {
				t.Fatalf("page of %d devices, limit 2", len(page.Devices))
			}
		case errors.Is(err, store.ErrBadCursor):
		case sort != "" && sort != store.SortHostname && sort != store.SortLastSeen:
		default:
			t.Fatalf("DevicePage(%q, %q, %q): %v", cursor, host, sort, err)
		}
	})
}
