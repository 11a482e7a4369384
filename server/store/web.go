package store

// Web is what the web UI and HTTP API need: role tokens and the audit log.
type Web interface{}
