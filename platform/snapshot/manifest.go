// Package snapshot records what the collectors read on a host (files,
// directory listings, commands, WMI queries, registry values) into a
// directory, and replays such a directory as a platform.Host on any OS.
//
// A snapshot is both a support bundle (what the agent saw, when a result
// looks wrong) and a test fixture (golden end-to-end tests). Its format:
//
//	DIR/manifest.json   goos, goarch, hostname, and the commands, WMI queries
//	                    and registry values with their results
//	DIR/commands/N.out  stdout and stderr of command N
//	DIR/wmi/N.json      rows of WMI query N
//	DIR/fs/<path>       files as read, by absolute path without the leading /
//
// Anything the snapshot lacks behaves as "not found" on that host. Secrets
// are never recorded: reads of key material and home directories are kept
// out of the snapshot (see denied).
package snapshot

import (
	"time"

	"github.com/evident-dev/evident/platform"
)

// ManifestName is the manifest's file name inside a snapshot directory.
const ManifestName = "manifest.json"

// Manifest is manifest.json.
type Manifest struct {
	GOOS         string     `json:"goos"`
	GOARCH       string     `json:"goarch"`
	Hostname     string     `json:"hostname"`
	RecordedAt   time.Time  `json:"recorded_at"`
	AgentVersion string     `json:"agent_version,omitempty"`
	Commands     []Command  `json:"commands"`
	WMI          []WMIQuery `json:"wmi"`
	Registry     []RegValue `json:"registry"`
	// Files lists paths read that did not exist or were withheld; files
	// that were read are under fs/.
	Files []File `json:"files,omitempty"`
	// Dirs and Globs record directory listings and glob matches as the
	// collectors saw them.
	Dirs  []Dir  `json:"dirs,omitempty"`
	Globs []Glob `json:"globs,omitempty"`
	// Stats records file metadata (platform.Stat) as the collectors saw it.
	Stats []Stat `json:"stats,omitempty"`
}

// Command is one command run.
type Command struct {
	Argv      []string `json:"argv"`
	Stdout    string   `json:"stdout,omitempty"` // path relative to the snapshot
	Stderr    string   `json:"stderr,omitempty"`
	ExitCode  int      `json:"exit_code"`
	NotFound  bool     `json:"not_found,omitempty"` // not installed on the host
	Error     string   `json:"error,omitempty"`     // failed to run (e.g. timed out)
	Truncated bool     `json:"truncated,omitempty"`
}

// WMIQuery is one WMI query.
type WMIQuery struct {
	Namespace string `json:"namespace"`
	Query     string `json:"query"`
	Result    string `json:"result,omitempty"` // path of the rows' JSON
	Missing   bool   `json:"missing,omitempty"`
	Error     string `json:"error,omitempty"`
}

// RegValue is one registry value under HKEY_LOCAL_MACHINE.
type RegValue struct {
	Key     string                  `json:"key"`
	Name    string                  `json:"name"`
	Value   *platform.RegistryValue `json:"value,omitempty"`
	Missing bool                    `json:"missing,omitempty"`
}

// File is a file read that is not under fs/.
type File struct {
	Path     string `json:"path"`
	Missing  bool   `json:"missing,omitempty"`
	Withheld bool   `json:"withheld,omitempty"` // never recorded: may hold secrets
	Error    string `json:"error,omitempty"`
}

// Dir is a directory listing.
type Dir struct {
	Path    string  `json:"path"`
	Entries []Entry `json:"entries"`
	Missing bool    `json:"missing,omitempty"`
}

// Entry is one directory entry.
type Entry struct {
	Name string `json:"name"`
	Dir  bool   `json:"dir,omitempty"`
}

// Glob is one glob pattern and its matches.
type Glob struct {
	Pattern string   `json:"pattern"`
	Matches []string `json:"matches"`
}
