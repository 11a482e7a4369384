package web

import (
	"encoding/json"
	"errors"
	"github.com/evident-dev/evident/internal/safetext"
	"net/http"
	"time"

	"github.com/evident-dev/evident/server/admin"
	"github.com/evident-dev/evident/server/report"
	"github.com/evident-dev/evident/server/store"
)

// The read-only JSON API: /api/v1/fleet, /api/v1/devices (the device list
// filters as query parameters), /api/v1/devices/{id}, /api/v1/period.

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(safetext.JSONWriter(w))
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeJSONError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// apiFleet is the fleet's aggregates: devices, compliant devices, and per
// control the devices in each status. The devices themselves are paged at
// /api/v1/devices.
func (s *Server) apiFleet(w http.ResponseWriter, r *http.Request, u *user) {
	o, err := s.overview(r, 0)
	if err != nil {
		s.log.Error("web: api fleet", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusOK, struct {
		*report.Overview
		DevicesURL string `json:"devices_url"`
	}{o, "/api/v1/devices"})
}

type apiDevice struct {
	ID         string            `json:"id"`
	Hostname   string            `json:"hostname"`
	OS         string            `json:"os"`
	LastSeenAt *time.Time        `json:"last_seen_at,omitempty"`
	Compliant  bool              `json:"compliant"`
	Groups     []string          `json:"groups,omitempty"`
	Controls   map[string]string `json:"controls"` // control id -> status
}

// apiDevices is one page of the device list: the filters, sort, cursor and
// limit of /devices as query parameters; next is the following page's URL.
func (s *Server) apiDevices(w http.ResponseWriter, r *http.Request, u *user) {
	_, page, err := s.listPage(r)
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
	for _, d := range page.Devices {
		a := apiDevice{ID: d.ID, Hostname: d.Hostname, OS: d.Device.OS(), LastSeenAt: d.LastSeenAt, Compliant: d.Compliant,
			Groups: d.Groups, Controls: map[string]string{}}
		for i, st := range s.statusesOf(d) {
			a.Controls[s.policy.Controls[i].ID] = st
		}
		out = append(out, a)
	}
	resp := map[string]any{"devices": out}
	if page.Next != "" {
		q := r.URL.Query()
		q.Set("cursor", page.Next)
		resp["next"] = "/api/v1/devices?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) apiDevice(w http.ResponseWriter, r *http.Request, u *user) {
	id := r.PathValue("id")
	if id == "" || len(id) > maxDeviceID {
		writeJSONError(w, http.StatusNotFound, "no such device")
		return
	}
	dev, err := s.st.Device(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeJSONError(w, http.StatusNotFound, "no such device")
		return
	} else if err != nil {
		s.log.Error("web: api device", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	d, hist, err := s.deviceReport(r, dev)
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

// apiCollect asks a device to collect now (admin tokens only; audited):
// 202 with the request's id.
func (s *Server) apiCollect(w http.ResponseWriter, r *http.Request, u *user) {
	if u.Role != store.RoleAdmin {
		s.audit(r.Context(), u.actor(), admin.ActionDeviceCollect+admin.Denied, "requires role admin; api device "+clipID(r.PathValue("id")))
		writeJSONError(w, http.StatusForbidden, "this action requires the admin role")
		return
	}
	var body struct {
		Collectors []string `json:"collectors"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10)).Decode(&body); err != nil {
			writeJSONError(w, http.StatusBadRequest, "body: want {\"collectors\": [\"name\", …]} or nothing")
			return
		}
	}
	id, err := s.adm.RequestCollection(r.Context(), u.actor(), r.PathValue("id"), body.Collectors)
	if err != nil && !errors.Is(err, admin.ErrNotAudited) {
		if rf, ok := errors.AsType[*admin.Refusal](err); ok {
			code := http.StatusBadRequest
			if errors.Is(err, store.ErrNotFound) {
				code = http.StatusNotFound
			}
			writeJSONError(w, code, rf.Error())
			return
		}
		s.log.Error("web: api collect", "err", err)
		writeJSONError(w, http.StatusInternalServerError, "internal error")
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"request": id, "device_id": r.PathValue("id")})
}

func clipID(id string) string {
	if len(id) > maxDeviceID {
		return id[:maxDeviceID]
	}
	return id
}
