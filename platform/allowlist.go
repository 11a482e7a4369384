package platform

// allowed maps a command name to the absolute paths where it may be found, in
// order of preference. Commands are never looked up through $PATH, so a user
// who can write a directory early in root's $PATH cannot substitute a binary.
var allowed = map[string][]string{
	// Linux and macOS
	"ps":          {"/bin/ps", "/usr/bin/ps"},
	"spctl":       {"/usr/sbin/spctl"},       // macOS Gatekeeper
	"sysadminctl": {"/usr/sbin/sysadminctl"}, // macOS screen lock
	// Linux
	"lsblk":          {"/usr/bin/lsblk", "/bin/lsblk"},
	"zfs":            {"/usr/sbin/zfs", "/sbin/zfs"},
	"fscrypt":        {"/usr/bin/fscrypt"},
	"nft":            {"/usr/sbin/nft", "/sbin/nft"},
	"iptables-save":  {"/usr/sbin/iptables-save", "/sbin/iptables-save"},
	"iptables":       {"/usr/sbin/iptables", "/sbin/iptables"},
	"ip6tables-save": {"/usr/sbin/ip6tables-save", "/sbin/ip6tables-save"},
	// The variants by name: nft-backed and legacy rules are separate hooks.
	"iptables-nft-save":     {"/usr/sbin/iptables-nft-save", "/sbin/iptables-nft-save"},
	"ip6tables-nft-save":    {"/usr/sbin/ip6tables-nft-save", "/sbin/ip6tables-nft-save"},
	"iptables-legacy-save":  {"/usr/sbin/iptables-legacy-save", "/sbin/iptables-legacy-save"},
	"ip6tables-legacy-save": {"/usr/sbin/ip6tables-legacy-save", "/sbin/ip6tables-legacy-save"},
	"ufw":                   {"/usr/sbin/ufw", "/sbin/ufw"},
	"firewall-cmd":          {"/usr/bin/firewall-cmd", "/bin/firewall-cmd"},
	"apt-get":               {"/usr/bin/apt-get", "/bin/apt-get"},
	"apt-config":            {"/usr/bin/apt-config", "/bin/apt-config"},
	"dnf":                   {"/usr/bin/dnf", "/bin/dnf"},
	"yum":                   {"/usr/bin/yum", "/bin/yum"},
	"rpm":                   {"/usr/bin/rpm", "/bin/rpm"},
	"dpkg-query":            {"/usr/bin/dpkg-query", "/bin/dpkg-query"},
	"cryptsetup":            {"/usr/sbin/cryptsetup", "/sbin/cryptsetup"},
	"systemctl":             {"/usr/bin/systemctl", "/bin/systemctl"},
	"needs-restarting":      {"/usr/bin/needs-restarting", "/bin/needs-restarting"},
	"mokutil":               {"/usr/bin/mokutil", "/bin/mokutil"},
	"uname":                 {"/usr/bin/uname", "/bin/uname"},
	"zypper":                {"/usr/bin/zypper", "/bin/zypper"},
	"apk":                   {"/sbin/apk", "/usr/sbin/apk"},
	// macOS
	"fdesetup":        {"/usr/bin/fdesetup"},
	"diskutil":        {"/usr/sbin/diskutil"},
	"softwareupdate":  {"/usr/sbin/softwareupdate"},
	"sw_vers":         {"/usr/bin/sw_vers"},
	"socketfilterfw":  {"/usr/libexec/ApplicationFirewall/socketfilterfw"},
	"csrutil":         {"/usr/bin/csrutil"},
	"defaults":        {"/usr/bin/defaults"},
	"pfctl":           {"/sbin/pfctl"},
	"ioreg":           {"/usr/sbin/ioreg"},
	"system_profiler": {"/usr/sbin/system_profiler"},
	"sysctl":          {"/usr/sbin/sysctl"},
	// Windows tools are reached through WMI in a later issue; no shell-outs here.
}

// AllowedPaths returns the candidate absolute paths for an allow-listed
// command name, or nil.
func AllowedPaths(name string) []string { return allowed[name] }
