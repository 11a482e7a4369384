package snapshot

import (
	"path"
	"regexp"
	"strings"
)

// denied are path patterns whose content is never recorded: key material
// and user data have no place in a support bundle.
var denied = []string{
	"/etc/shadow*", "/etc/gshadow*", "/etc/ssh/*key*", "/root/*", "/home/*",
	"*.key", "*.pem", "*/identity/*", "/var/lib/evident-agent/*",
}

func isDenied(p string) bool {
	p = path.Clean("/" + p)
	for _, pat := range denied {
		if ok, _ := path.Match(pat, p); ok {
			return true
		}
		if strings.HasPrefix(pat, "*") {
			if ok, _ := path.Match(pat, path.Base(p)); ok {
				return true
			}
		}
		if strings.HasSuffix(pat, "/*") && strings.HasPrefix(p, strings.TrimSuffix(pat, "*")) {
			return true
		}
	}
	return false
}

var (
	// URL credentials: http://user:pass@proxy:3128 (apt proxies, zypper
	// repository URLs).
	urlCredentials = regexp.MustCompile(`(?i)([a-z][a-z0-9+.-]*://)[^\s/@:"']+:[^\s/@"']+@`)
	// key = value or key: value lines whose key names a secret (dconf proxy
	// passwords, tokens in configuration files).
	secretValue = regexp.MustCompile(`(?im)^([ \t]*[\w.:/-]*(?:password|passwd|secret|token|credential|api[_-]?key)[\w.:/-]*[ \t]*(?:=|:|[ \t])[ \t]*)("[^"\n]*"|'[^'\n]*'|[^\s;]+)`)
)

// Redact masks credentials in recorded text: what a command printed or a
// file held may include a proxy password (`apt-config dump` prints
// Acquire::http::Proxy) or a repository token. Collectors never decide on
// those values, so a replay is unaffected.
func Redact(b []byte) []byte {
	if len(b) == 0 {
		return b
	}
	b = urlCredentials.ReplaceAll(b, []byte("${1}REDACTED@"))
	return secretValue.ReplaceAll(b, []byte(`${1}"REDACTED"`))
}
