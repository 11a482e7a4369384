package admin

import (
	"context"
	"io"
	"strings"

	"github.com/evident-dev/evident/server/inventory"
	"github.com/evident-dev/evident/server/store"
)

// InventoryRequest is an inventory file to import.
type InventoryRequest struct {
	// Source is the operator's note, shown in reports ("Jamf export
	// 2026-11").
	Source string
	// Filename is the file's base name.
	Filename string
	CSV      io.Reader
}

// ImportInventory parses a device inventory CSV (see package inventory)
// and replaces the stored inventory with it. It returns the import's record
// and the parsed file (columns found, blank rows, duplicates); a file that
// does not parse is refused with the parser's error, which names its line.
func (s *Service) ImportInventory(ctx context.Context, actor string, r InventoryRequest) (store.InventoryImport, *inventory.Inventory, error) {
	if err := checkActor(actor); err != nil {
		return store.InventoryImport{}, nil, err
	}
	r.Source = strings.TrimSpace(r.Source)
	request := detail("file", clip(r.Filename, MaxLabel), "source", r.Source)
	var inv *inventory.Inventory
	err := checkLen("source", r.Source, MaxLabel)
	if err == nil {
		err = checkLen("file name", r.Filename, MaxLabel)
	}
	if err == nil {
		if inv, err = inventory.Parse(r.CSV); err != nil {
			err = &Refusal{msg: err.Error(), err: err}
		}
	}
	if err != nil {
		return store.InventoryImport{}, nil, s.refused(ctx, actor, ActionInventoryImport, request, err)
	}
	imp, err := s.st.ReplaceInventory(ctx, store.InventoryImport{ImportedAt: s.now().UTC(), Source: r.Source,
		Filename: r.Filename, SHA256: inv.SHA256}, inv.Rows)
	if err != nil {
		return store.InventoryImport{}, nil, err
	}
	return imp, inv, s.audit(ctx, actor, ActionInventoryImport, detail("import", itoa(imp.ID), "file", r.Filename,
		"source", r.Source, "rows", itoa(int64(imp.Rows)), "sha256", imp.SHA256))
}
