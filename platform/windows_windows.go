//go:build windows

package platform

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"

	"github.com/yusufpapurcu/wmi"
	"golang.org/x/sys/windows/registry"
)

// WMI implements Host with github.com/yusufpapurcu/wmi (the library
// gopsutil uses). The query runs on its own goroutine: COM calls cannot be
// cancelled, so a hung provider is abandoned when ctx ends.
func (l *Live) WMI(ctx context.Context, namespace, query string, dst any) error {
	if q := wmiHung.Load(); q != nil {
		return fmt.Errorf("WMI %s %q: not run: an earlier query (%s) has not returned, and the WMI library serialises queries", namespace, query, *q)
	}
	done := make(chan error, 1)
	go func() { done <- wmi.QueryNamespace(query, dst, namespace) }()
	select {
	case err := <-done:
		if err != nil && (strings.Contains(err.Error(), "Invalid class") || strings.Contains(err.Error(), "Invalid namespace")) {
			return fmt.Errorf("WMI %s %q: %w (%v)", namespace, query, fs.ErrNotExist, err)
		}
		return err
	case <-ctx.Done():
		// github.com/yusufpapurcu/wmi holds a package-level lock for the
		// whole query, and a hung provider (SecurityCenter2 and Defender
		// are known to hang) keeps it: later queries would queue behind it
		// and leak a goroutine each. Fail them fast until it returns.
		hung := namespace + " " + query
		wmiHung.Store(&hung)
		go func() {
			<-done
			wmiHung.Store(nil)
		}()
		return fmt.Errorf("WMI %s %q: %w", namespace, query, ctx.Err())
	}
}

// wmiHung names the abandoned query while one is still running (see WMI).
var wmiHung atomic.Pointer[string]

// Registry implements Host for HKEY_LOCAL_MACHINE, 64-bit view.
func (l *Live) Registry(key, name string) (RegistryValue, error) {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, key, registry.QUERY_VALUE|registry.WOW64_64KEY)
	if errors.Is(err, registry.ErrNotExist) {
		return RegistryValue{}, fmt.Errorf(`HKLM\%s: %w`, key, fs.ErrNotExist)
	}
	if err != nil {
		return RegistryValue{}, err
	}
	defer k.Close()
	_, typ, err := k.GetValue(name, nil)
	if errors.Is(err, registry.ErrNotExist) {
		return RegistryValue{}, fmt.Errorf(`HKLM\%s\%s: %w`, key, name, fs.ErrNotExist)
	}
	if err != nil {
		return RegistryValue{}, err
	}
	switch typ {
	case registry.DWORD, registry.QWORD:
		v, _, err := k.GetIntegerValue(name)
		t := "DWORD"
		if typ == registry.QWORD {
			t = "QWORD"
		}
		return RegistryValue{Type: t, Int: v}, err
	case registry.SZ, registry.EXPAND_SZ:
		v, _, err := k.GetStringValue(name)
		t := "SZ"
		if typ == registry.EXPAND_SZ {
			t = "EXPAND_SZ"
		}
		return RegistryValue{Type: t, String: v}, err
	case registry.MULTI_SZ:
		v, _, err := k.GetStringsValue(name)
		return RegistryValue{Type: "MULTI_SZ", Strings: v}, err
	default:
		v, _, err := k.GetBinaryValue(name)
		return RegistryValue{Type: "BINARY", Binary: v}, err
	}
}
