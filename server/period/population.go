package period

import (
	"context"
	"errors"

	"github.com/evident-dev/evident/server/inventory"
	"github.com/evident-dev/evident/server/store"
)

// population reconciles the devices enrolled before the period end with the
// newest imported inventory (see Population for the matching rules).
func population(ctx context.Context, st interface {
	Inventory(ctx context.Context) (store.InventoryImport, []store.InventoryRow, error)
}, devices []DeviceRef, reported map[string]bool) (Population, error) {
	p := Population{InInventoryNeverEnrolled: []InventoryRow{}, InInventorySilent: []Match{}, EnrolledNotInInventory: []DeviceRef{}}
	imp, rows, err := st.Inventory(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return p, nil
	}
	if err != nil {
		return p, err
	}
	at := imp.ImportedAt.UTC()
	p.Imported, p.InventoryImportedAt, p.InventorySource, p.InventoryFilename, p.InventorySHA256, p.InventoryRows =
		true, &at, imp.Source, imp.Filename, imp.SHA256, len(rows)

	bySerial, byHost := map[string][]int{}, map[string][]int{}
	for i, d := range devices {
		if s := inventory.NormalizeSerial(d.SerialNumber); s != "" {
			bySerial[s] = append(bySerial[s], i)
		}
		if h := inventory.NormalizeHostname(d.Hostname); h != "" {
			byHost[h] = append(byHost[h], i)
		}
	}
	inInventory := make([]bool, len(devices))
	for _, r := range rows {
		row := InventoryRow{Line: r.Line, SerialNumber: r.SerialNumber, Hostname: r.Hostname, Owner: r.Owner}
		serial := inventory.NormalizeSerial(r.SerialNumber)
		var matched []int
		by := "serial_number"
		if serial != "" {
			matched = bySerial[serial]
		}
		if len(matched) == 0 {
			by = "hostname"
			for _, i := range byHost[inventory.NormalizeHostname(r.Hostname)] {
				// A device reporting another serial number is another
				// machine with the same name.
				if s := inventory.NormalizeSerial(devices[i].SerialNumber); serial == "" || s == "" || s == serial {
					matched = append(matched, i)
				}
			}
		}
		if len(matched) == 0 {
			p.InInventoryNeverEnrolled = append(p.InInventoryNeverEnrolled, row)
			continue
		}
		p.Matched++
		silent, newest := true, matched[0]
		for _, i := range matched {
			inInventory[i] = true
			if reported[devices[i].ID] {
				silent = false
			}
			if devices[i].EnrolledAt.After(devices[newest].EnrolledAt) {
				newest = i
			}
		}
		if silent {
			p.InInventorySilent = append(p.InInventorySilent, Match{Row: row, Device: devices[newest], MatchedBy: by})
		}
	}
	for i, d := range devices {
		if !inInventory[i] {
			p.EnrolledNotInInventory = append(p.EnrolledNotInInventory, d)
		}
	}
	p.NeverEnrolledCount, p.SilentCount, p.NotInInventoryCount =
		len(p.InInventoryNeverEnrolled), len(p.InInventorySilent), len(p.EnrolledNotInInventory)
	return p, nil
}
