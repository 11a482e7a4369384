package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
)

// The read-only JSON API: /api/v1/fleet, /api/v1/devices (the device list
// filters as query parameters), /api/v1/devices/{id}, /api/v1/period.

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

func (s *Server) apiFleet(w http.ResponseWriter, r *http.Request, u *user) {
	f, err := s.fleet(r)
	if err != nil {
		s.log.Error("web: api fleet", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, f)
}

type apiDevice struct {
	ID         string            `json:"id"`
	Hostname   string            `json:"hostname"`
	OS         string            `json:"os"`
	LastSeenAt *time.Time        `json:"last_seen_at,omitempty"`
	Compliant  bool              `json:"compliant"`
	Controls   map[string]string `json:"controls"` // control id -> status
}

func (s *Server) apiDevices(w http.ResponseWriter, r *http.Request, u *user) {
	_, devs, _, err := s.filteredDevices(r)
	if errors.Is(err, errBadFilter) {
		writeJSONError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err != nil {
		s.log.Error("web: api devices", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	out := []apiDevice{}
	for _, d := range devs {
		a := apiDevice{ID: d.ID, Hostname: d.Hostname, OS: d.OS, LastSeenAt: d.LastSeenAt, Compliant: d.Compliant, Controls: map[string]string{}}
		for _, c := range d.Controls {
			a.Controls[c.ID] = c.Status
		}
		out = append(out, a)
	}
	writeJSON(w, http.StatusOK, map[string]any{"devices": out})
}

func (s *Server) apiDevice(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxDeviceID {
		writeJSONError(w, http.StatusNotFound, "no such device")
		return
	}
	if _, err := s.st.Device(r.Context(), id); errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "no such device")
		return
	} else if err != nil {
		s.log.Error("web: api device", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	d, hist, err := s.deviceReport(r, id)
	if err != nil {
		s.log.Error("web: api device", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		report.Device
		Intervals []store.ControlState `json:"intervals"`
	}{d, hist})
}

func (s *Server) apiPeriod(w http.ResponseWriter, r *http.Request, u *user) {
	_, rep, code, err := s.buildPeriod(r)
	if err != nil {
		writeJSONError(w, code, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, rep)
}
