package diskencryption

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/evident-dev/evident/collectors"
	"github.com/evident-dev/evident/platform"
	"github.com/evident-dev/evident/platform/platformtest"
)

func TestParseFdesetupStatus(t *testing.T) {
	tests := []struct {
		file, state string
		pending     bool
	}{
		{"fdesetup-on.txt", "encrypted", false},
		{"fdesetup-off.txt", "off", false},
		{"fdesetup-deferred.txt", "off", true},
		{"fdesetup-encrypting.txt", "encrypting", false},
		{"fdesetup-decrypting.txt", "decrypting", false},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			fv, err := parseFdesetupStatus(platformtest.ReadFixture(t, "darwin", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if fv.State != tt.state || fv.Pending != tt.pending || fv.Detail == "" {
				t.Errorf("got %+v", fv)
			}
		})
	}
	for _, bad := range []string{"", "\n\n", "garbage", "Error: Unable to get status.", "Percent completed = 42"} {
		if fv, err := parseFdesetupStatus([]byte(bad)); err == nil {
			t.Errorf("parseFdesetupStatus(%q) = %+v, want error", bad, fv)
		}
	}
}

func TestParseAPFSList(t *testing.T) {
	tests := []struct {
		file      string
		vols      int
		dataFV    bool
		dataDev   string
		extraRole bool
	}{
		{file: "apfs-list-applesilicon-filevault-on.plist", vols: 9, dataFV: true, dataDev: "disk3s5"},
		{file: "apfs-list-applesilicon-filevault-off.plist", vols: 9, dataDev: "disk3s5"},
		{file: "apfs-list-applesilicon-encrypting.plist", vols: 9, dataFV: true, dataDev: "disk3s5"},
		{file: "apfs-list-applesilicon-extra-volume.plist", vols: 10, dataFV: true, dataDev: "disk3s5", extraRole: true},
		{file: "apfs-list-intel-filevault-off.plist", vols: 5, dataDev: "disk1s2"},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			vs, err := parseAPFSList(platformtest.ReadFixture(t, "darwin", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if len(vs) != tt.vols {
				t.Fatalf("%d volumes, want %d: %+v", len(vs), tt.vols, vs)
			}
			found, noRole := false, false
			for _, v := range vs {
				if len(v.Roles) == 1 && v.Roles[0] == "Data" {
					found = true
					if v.Device != tt.dataDev || v.FileVault != tt.dataFV {
						t.Errorf("data volume %+v", v)
					}
				}
				noRole = noRole || len(v.Roles) == 0
			}
			if !found || noRole != tt.extraRole {
				t.Errorf("data found %v, role-less volume %v", found, noRole)
			}
		})
	}
	full := platformtest.ReadFixture(t, "darwin", "apfs-list-applesilicon-filevault-on.plist")
	for _, bad := range [][]byte{nil, []byte("garbage"), full[:len(full)/2], []byte(`<plist version="1.0"><array/></plist>`),
		[]byte(`<plist version="1.0"><dict><key>Other</key><true/></dict></plist>`),
		[]byte("Error: -69808: Some information was unavailable during an internal lookup")} {
		if _, err := parseAPFSList(bad); err == nil {
			t.Errorf("parseAPFSList(%.40q): want error", bad)
		}
	}
}

func TestParsePlist(t *testing.T) {
	doc := `<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">
<plist version="1.0">
<dict>
	<key>s</key><string>a &amp; b</string>
	<key>i</key><integer>-42</integer>
	<key>u</key><integer>18446744073709551615</integer>
	<key>r</key><real>1.5</real>
	<key>t</key><true/>
	<key>f</key><false/>
	<key>d</key><data>
	aGVs
	bG8=
	</data>
	<key>date</key><date>2024-08-20T09:12:33Z</date>
	<key>a</key><array><string>x</string><dict/><array/></array>
	<key>empty</key><string></string>
</dict>
</plist>`
	v, err := parsePlist([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	m, _ := plistDict(v)
	if plistString(m, "s") != "a & b" || m["i"] != int64(-42) || m["u"] != uint64(18446744073709551615) || m["r"] != 1.5 ||
		m["t"] != true || m["f"] != false || string(m["d"].([]byte)) != "hello" || len(plistArray(m, "a")) != 3 || m["empty"] != "" {
		t.Errorf("got %#v", m)
	}
	for _, bad := range []string{
		``, `<dict/>`, `<plist/>`, `<plist><key>k</key></plist>`, `<plist><dict><key>k</key></dict></plist>`,
		`<plist><dict><string>v</string></dict></plist>`, `<plist><dict><key>a</key><key>b</key></dict></plist>`,
		`<plist><array><key>k</key></array></plist>`, `<plist><integer>x</integer></plist>`, `<plist><real>x</real></plist>`,
		`<plist><data>!!</data></plist>`, `<plist><date>yesterday</date></plist>`, `<plist><blob/></plist>`,
		`<plist><true>x</true></plist>`, `<plist><string><b/></string></plist>`, `<plist><dict>`, `<plist>text</plist>`,
		`<plist><string/><string/></plist>`,
	} {
		if v, err := parsePlist([]byte(bad)); err == nil {
			t.Errorf("parsePlist(%q) = %#v, want error", bad, v)
		}
	}
	deep := ""
	for i := 0; i < 200; i++ {
		deep += "<array>"
	}
	if _, err := parsePlist([]byte("<plist>" + deep)); err == nil {
		t.Error("deep nesting: want error")
	}
}

func FuzzParsePlist(f *testing.F) {
	for _, n := range []string{"apfs-list-applesilicon-filevault-on.plist", "apfs-list-intel-filevault-off.plist"} {
		f.Add(platformtest.ReadFixture(f, "darwin", n))
	}
	f.Add([]byte(`<plist><dict><key>k</key><data>aGk=</data></dict></plist>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = parsePlist(b)
		_, _ = parseAPFSList(b)
	})
}

func FuzzParseFdesetupStatus(f *testing.F) {
	for _, n := range []string{"fdesetup-on.txt", "fdesetup-off.txt", "fdesetup-deferred.txt", "fdesetup-encrypting.txt"} {
		f.Add(platformtest.ReadFixture(f, "darwin", n))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fv, err := parseFdesetupStatus(b)
		if err == nil && fv.State == "" {
			t.Errorf("no state for %q", b)
		}
	})
}

func darwinHost(cmds map[string]platform.Result) platformtest.Replay {
	return platformtest.Replay{Live: &platform.Live{Root: "testdata/darwin"}, OS: "darwin", Commands: cmds}
}

func TestCollectDarwin(t *testing.T) {
	fde := func(file string, code int) platform.Result {
		return platform.Result{Stdout: platformtest.ReadFixture(t, "darwin", file), ExitCode: code}
	}
	list := func(file string) platform.Result {
		return platform.Result{Stdout: platformtest.ReadFixture(t, "darwin", file)}
	}
	type want struct {
		state     string
		encrypted bool
	}
	tests := []struct {
		name    string
		cmds    map[string]platform.Result
		data    want
		counted int // volumes that are not exempt
		wantErr bool
	}{
		{"on", map[string]platform.Result{"fdesetup status": fde("fdesetup-on.txt", 0), "diskutil": list("apfs-list-applesilicon-filevault-on.plist")},
			want{"encrypted", true}, 1, false},
		{"off", map[string]platform.Result{"fdesetup status": fde("fdesetup-off.txt", 0), "diskutil": list("apfs-list-applesilicon-filevault-off.plist")},
			want{"off", false}, 1, false},
		{"deferred", map[string]platform.Result{"fdesetup status": fde("fdesetup-deferred.txt", 0), "diskutil": list("apfs-list-intel-filevault-off.plist")},
			want{"off", false}, 1, false},
		{"encrypting exit 2", map[string]platform.Result{"fdesetup status": fde("fdesetup-encrypting.txt", 2), "diskutil": list("apfs-list-applesilicon-encrypting.plist")},
			want{"encrypting", false}, 1, false},
		{"extra volume", map[string]platform.Result{"fdesetup status": fde("fdesetup-on.txt", 0), "diskutil": list("apfs-list-applesilicon-extra-volume.plist")},
			want{"encrypted", true}, 2, false},
		{"no diskutil", map[string]platform.Result{"fdesetup status": fde("fdesetup-on.txt", 0)},
			want{"encrypted", true}, 1, false},
		{"diskutil garbage", map[string]platform.Result{"fdesetup status": fde("fdesetup-off.txt", 0), "diskutil": {Stdout: []byte("garbage")}},
			want{"off", false}, 1, false},
		{"fdesetup fails", map[string]platform.Result{"fdesetup status": {Stderr: []byte("Error"), ExitCode: 1}, "diskutil": list("apfs-list-applesilicon-filevault-on.plist")},
			want{"off", true}, 1, false},
		{"nothing", nil, want{}, 0, true},
		{"both fail", map[string]platform.Result{"fdesetup status": {Stdout: []byte("garbage")}, "diskutil": {ExitCode: 1}}, want{}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := New().Collect(context.Background(), darwinHost(tt.cmds))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v", err)
			}
			if errors.Is(err, errors.ErrUnsupported) {
				t.Fatal("unsupported")
			}
			p := res.Payload.(Payload)
			counted := 0
			for _, v := range p.Volumes {
				if v.Exempt {
					if v.ExemptReason == "" {
						t.Errorf("exempt without reason: %+v", v)
					}
					continue
				}
				counted++
				if v.Role == "data" && (v.Device == "/dev/disk3s5" || v.Device == "/dev/disk1s2" || v.Device == "boot volume group") {
					// fdesetup failing leaves State from the flag only.
					if tt.name != "fdesetup fails" && v.State != tt.data.state {
						t.Errorf("state %q want %q (%+v)", v.State, tt.data.state, v)
					}
					if v.Encrypted != tt.data.encrypted {
						t.Errorf("encrypted %v want %v (%+v)", v.Encrypted, tt.data.encrypted, v)
					}
				}
			}
			if counted != tt.counted {
				t.Errorf("%d counted volumes, want %d: %+v", counted, tt.counted, p.Volumes)
			}
			if !tt.wantErr && len(res.Sources) == 0 {
				t.Error("no sources")
			}
		})
	}
}

func TestCollectDarwinExemptions(t *testing.T) {
	res, err := New().Collect(context.Background(), darwinHost(map[string]platform.Result{
		"fdesetup status": {Stdout: platformtest.ReadFixture(t, "darwin", "fdesetup-on.txt")},
		"diskutil":        {Stdout: platformtest.ReadFixture(t, "darwin", "apfs-list-applesilicon-filevault-on.plist")},
	}))
	if err != nil {
		t.Fatal(err)
	}
	roles := map[string]string{}
	for _, v := range res.Payload.(Payload).Volumes {
		roles[v.Device] = v.Role
		if v.Device == "/dev/disk3s1" && (!v.Exempt || v.ExemptReason[:6] != "sealed") {
			t.Errorf("system volume %+v", v)
		}
	}
	if roles["/dev/disk3s1"] != "system" || roles["/dev/disk3s6"] != "swap" || roles["/dev/disk3s2"] != "preboot" || roles["/dev/disk3s5"] != "data" {
		t.Errorf("roles %v", roles)
	}
	obs := collectors.Run(context.Background(), New(), darwinHost(nil), time.Second, time.Now)
	if obs.Status != collectors.StatusError {
		t.Errorf("no commands: status %s", obs.Status)
	}
}
