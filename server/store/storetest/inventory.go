package storetest

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/evident-dev/evident/server/store"
)

// testInventoryWaivers runs the inventory and waiver conformance tests.
func testInventoryWaivers(t *testing.T, open func(*testing.T) store.Store) {
	t.Run("Inventory", func(t *testing.T) { testInventory(t, open) })
	t.Run("Waivers", func(t *testing.T) { testWaivers(t, open) })
	t.Run("WaiversOverlapping", func(t *testing.T) { testWaiversOverlapping(t, open) })
}

// testInventory: nothing imported is ErrNotFound; an import replaces the
// previous rows entirely and its record is returned.
func testInventory(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	if _, _, err := s.Inventory(ctx); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Inventory on an empty store: %v, want ErrNotFound", err)
	}
	first := []store.InventoryRow{
		{Line: 2, SerialNumber: "C02XL0GHJGH5", Hostname: "mac-1.corp.example", Owner: "ada@example.com"},
		{Line: 3, Hostname: "linux-2"},
		{Line: 5, SerialNumber: "PF3ABC12"},
	}
	imp1, err := s.ReplaceInventory(ctx, store.InventoryImport{ImportedAt: at(time.Hour), Source: "Jamf", Filename: "jamf.csv", SHA256: "aa"}, first)
	if err != nil {
		t.Fatalf("ReplaceInventory: %v", err)
	}
	if imp1.ID == 0 || imp1.Rows != 3 {
		t.Errorf("import record = %+v, want an id and 3 rows", imp1)
	}
	imp, rows, err := s.Inventory(ctx)
	if err != nil {
		t.Fatalf("Inventory: %v", err)
	}
	if want := (store.InventoryImport{ID: imp1.ID, ImportedAt: at(time.Hour), Source: "Jamf", Filename: "jamf.csv", Rows: 3, SHA256: "aa"}); !reflect.DeepEqual(imp, want) {
		t.Errorf("import = %+v, want %+v", imp, want)
	}
	if !reflect.DeepEqual(rows, first) {
		t.Errorf("rows = %+v, want %+v", rows, first)
	}

	second := []store.InventoryRow{{Line: 2, SerialNumber: "NEW-1", Owner: "bob"}}
	imp2, err := s.ReplaceInventory(ctx, store.InventoryImport{ImportedAt: at(2 * time.Hour), Source: "Intune", Filename: "intune.csv", SHA256: "bb"}, second)
	if err != nil {
		t.Fatalf("second ReplaceInventory: %v", err)
	}
	if imp2.ID == imp1.ID {
		t.Errorf("second import reused id %d", imp1.ID)
	}
	imp, rows, err = s.Inventory(ctx)
	if err != nil || imp.ID != imp2.ID || imp.Source != "Intune" || !reflect.DeepEqual(rows, second) {
		t.Errorf("after the second import: %+v %+v %v; want only its rows", imp, rows, err)
	}

	// An empty inventory is an import too.
	if _, err := s.ReplaceInventory(ctx, store.InventoryImport{ImportedAt: at(3 * time.Hour), SHA256: "cc"}, nil); err != nil {
		t.Fatalf("empty ReplaceInventory: %v", err)
	}
	if imp, rows, err = s.Inventory(ctx); err != nil || imp.Rows != 0 || len(rows) != 0 {
		t.Errorf("after an empty import: %+v %+v %v; want no rows", imp, rows, err)
	}
}

func waiver(id, dev, control string, starts, expires time.Time) store.Waiver {
	return store.Waiver{ID: id, DeviceID: dev, ControlID: control, Reason: "replacement laptop on order", Approver: "CISO",
		CreatedBy: "admin", CreatedAt: t0, StartsAt: starts, ExpiresAt: expires}
}

// testWaivers: validation, round trip, listing order and revocation.
func testWaivers(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	mustEnroll(t, s, device("dev-a", "m-a"))
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }

	bad := map[string]store.Waiver{
		"no reason":       func() store.Waiver { w := waiver("w-x", "dev-a", "", h(0), h(1)); w.Reason = " "; return w }(),
		"no approver":     func() store.Waiver { w := waiver("w-x", "dev-a", "", h(0), h(1)); w.Approver = ""; return w }(),
		"no device":       waiver("w-x", "", "", h(0), h(1)),
		"no expiry":       waiver("w-x", "dev-a", "", h(0), time.Time{}),
		"expiry at start": waiver("w-x", "dev-a", "", h(1), h(1)),
		"over a year":     waiver("w-x", "dev-a", "", h(0), h(0).AddDate(1, 0, 0).Add(time.Nanosecond)),
	}
	for name, w := range bad {
		if err := s.CreateWaiver(ctx, w); !errors.Is(err, store.ErrBadWaiver) {
			t.Errorf("CreateWaiver(%s) = %v, want ErrBadWaiver", name, err)
		}
	}
	if err := s.CreateWaiver(ctx, waiver("w-x", "dev-unknown", "", h(0), h(1))); err == nil {
		t.Errorf("CreateWaiver for an unknown device succeeded")
	}

	w1 := waiver("w-1", "dev-a", "DC-ENC-01", h(0), h(0).AddDate(1, 0, 0)) // exactly a year is allowed
	w2 := waiver("w-2", "dev-a", "", h(1), h(5))
	w2.CreatedAt = at(-time.Hour)
	for _, w := range []store.Waiver{w1, w2} {
		if err := s.CreateWaiver(ctx, w); err != nil {
			t.Fatalf("CreateWaiver(%s): %v", w.ID, err)
		}
	}
	if err := s.CreateWaiver(ctx, w1); err == nil {
		t.Errorf("CreateWaiver with a duplicate id succeeded")
	}
	if got, err := s.Waiver(ctx, "w-1"); err != nil || !reflect.DeepEqual(got, w1) {
		t.Errorf("Waiver(w-1) = %+v, %v; want %+v", got, err, w1)
	}
	if _, err := s.Waiver(ctx, "w-none"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Waiver(unknown) = %v, want ErrNotFound", err)
	}
	if got, err := s.ListWaivers(ctx); err != nil || !reflect.DeepEqual(got, []store.Waiver{w2, w1}) {
		t.Errorf("ListWaivers = %+v, %v; want w-2 (created first), w-1", got, err)
	}

	if err := s.RevokeWaiver(ctx, "w-2", h(3)); err != nil {
		t.Fatalf("RevokeWaiver: %v", err)
	}
	if err := s.RevokeWaiver(ctx, "w-2", h(4)); err != nil {
		t.Fatalf("RevokeWaiver again: %v", err)
	}
	got, err := s.Waiver(ctx, "w-2")
	if err != nil || got.RevokedAt == nil || !got.RevokedAt.Equal(h(3)) || !got.End().Equal(h(3)) {
		t.Errorf("revoked waiver = %+v, %v; want revoked (and ending) at the first revocation %v", got, err, h(3))
	}
	if got.ActiveAt(h(3)) || !got.ActiveAt(h(2)) || got.ActiveAt(h(0)) {
		t.Errorf("ActiveAt of a waiver for [1h, 3h) is wrong at 0h, 2h or 3h")
	}
	if err := s.RevokeWaiver(ctx, "w-none", h(3)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RevokeWaiver(unknown) = %v, want ErrNotFound", err)
	}
}

// testWaiversOverlapping holds WaiversOverlapping to the half-open period
// and to each waiver's own [StartsAt, End()).
func testWaiversOverlapping(t *testing.T, open func(*testing.T) store.Store) {
	s := open(t)
	ctx := t.Context()
	mustEnroll(t, s, device("dev-a", "m-a"))
	mustEnroll(t, s, device("dev-b", "m-b"))
	h := func(n int) time.Time { return at(time.Duration(n) * time.Hour) }
	revoked := func(w store.Waiver, r time.Time) store.Waiver { w.RevokedAt = &r; return w }
	ws := []store.Waiver{
		waiver("w-early", "dev-a", "c1", h(0), h(10)),                  // ends at the period start
		waiver("w-a1", "dev-a", "c1", h(5), h(15)),                     // overlaps the start
		waiver("w-a2", "dev-a", "", h(12), h(30)),                      // overlaps w-a1 and the end
		waiver("w-b", "dev-b", "c2", h(11), h(12)),                     // inside
		waiver("w-late", "dev-b", "c1", h(20), h(25)),                  // starts at the period end
		revoked(waiver("w-rev", "dev-b", "c1", h(0), h(30)), h(10)),    // revoked at the start
		revoked(waiver("w-never", "dev-b", "c1", h(15), h(30)), h(1)),  // revoked before it started
		revoked(waiver("w-rev-in", "dev-b", "c3", h(0), h(30)), h(15)), // revoked inside
	}
	for _, w := range ws {
		if err := s.CreateWaiver(ctx, w); err != nil {
			t.Fatalf("CreateWaiver(%s): %v", w.ID, err)
		}
	}
	got, err := s.WaiversOverlapping(ctx, h(10), h(20))
	if err != nil {
		t.Fatalf("WaiversOverlapping: %v", err)
	}
	var ids []string
	for _, w := range got {
		ids = append(ids, w.ID)
	}
	if want := []string{"w-a1", "w-a2", "w-rev-in", "w-b"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("WaiversOverlapping [10h, 20h) = %v, want %v (by device, start, id)", ids, want)
	}
	if got, err := s.WaiversOverlapping(ctx, h(40), h(50)); err != nil || len(got) != 0 {
		t.Errorf("WaiversOverlapping after every expiry = %v, %v; want none", got, err)
	}
}
