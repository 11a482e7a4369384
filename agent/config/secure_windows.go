//go:build windows

package config

import (
	"os"

	"golang.org/x/sys/windows"
)

// protectedSDDL makes SYSTEM the owner and grants full control to SYSTEM and
// Administrators only, with inheritance from the parent blocked: Users, who
// can read most of %ProgramData% (and create directories there), can
// neither read the enrollment secret and the device key nor, having made the
// directory first, keep the owner's right to change its ACL.
const protectedSDDL = "O:SYG:SYD:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"

func restrict(path string) error {
	sd, err := windows.SecurityDescriptorFromString(protectedSDDL)
	if err != nil {
		return err
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return err
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return err
	}
	return windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, owner, nil, dacl, nil)
}

// SecureDir creates dir and restricts it to SYSTEM and Administrators, so
// files created in it (the atomic write's temporary file too) inherit that.
func SecureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return restrict(dir)
}

// secureFile restricts path to SYSTEM and Administrators.
func secureFile(path string) error { return restrict(path) }
