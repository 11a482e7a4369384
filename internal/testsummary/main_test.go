package main

import (
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	in := strings.Join([]string{
		`{"Action":"start","Package":"ex/a"}`,
		`{"Action":"run","Package":"ex/a","Test":"TestOK"}`,
		`{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"=== RUN   TestOK\n"}`,
		`{"Action":"output","Package":"ex/a","Test":"TestOK","Output":"    a_test.go:9: chatter\n"}`,
		`{"Action":"pass","Package":"ex/a","Test":"TestOK"}`,
		`{"Action":"run","Package":"ex/a","Test":"TestBrowser"}`,
		`{"Action":"output","Package":"ex/a","Test":"TestBrowser","Output":"=== RUN   TestBrowser\n"}`,
		`{"Action":"output","Package":"ex/a","Test":"TestBrowser","Output":"    webui_test.go:30: chromium not installed (apt-get install chromium)\n"}`,
		`{"Action":"output","Package":"ex/a","Test":"TestBrowser","Output":"--- SKIP: TestBrowser (0.00s)\n"}`,
		`{"Action":"skip","Package":"ex/a","Test":"TestBrowser"}`,
		`{"Action":"output","Package":"ex/a","Output":"PASS\n"}`,
		`{"Action":"output","Package":"ex/a","Output":"ok  \tex/a\t0.1s\n"}`,
		`{"Action":"pass","Package":"ex/a"}`,
		`{"Action":"run","Package":"ex/b","Test":"TestBad"}`,
		`{"Action":"output","Package":"ex/b","Test":"TestBad","Output":"=== RUN   TestBad\n"}`,
		`{"Action":"output","Package":"ex/b","Test":"TestBad","Output":"    b_test.go:5: want 2, got 3\n"}`,
		`{"Action":"output","Package":"ex/b","Test":"TestBad","Output":"--- FAIL: TestBad (0.00s)\n"}`,
		`{"Action":"fail","Package":"ex/b","Test":"TestBad"}`,
		`{"Action":"output","Package":"ex/b","Output":"FAIL\tex/b\t0.2s\n"}`,
		`{"Action":"fail","Package":"ex/b"}`,
		`{"Action":"output","Package":"ex/c","Output":"?   \tex/c\t[no test files]\n"}`,
		`{"Action":"skip","Package":"ex/c"}`,
	}, "\n")
	var out strings.Builder
	skips, failed, err := summarize(strings.NewReader(in), &out)
	if err != nil || !failed {
		t.Fatalf("failed %v, err %v: want a failure and no error", failed, err)
	}
	want := "ok  \tex/a\t0.1s\n=== RUN   TestBad\n    b_test.go:5: want 2, got 3\n--- FAIL: TestBad (0.00s)\nFAIL\tex/b\t0.2s\n?   \tex/c\t[no test files]\n"
	if out.String() != want {
		t.Errorf("printed\n%q\nwant\n%q", out.String(), want)
	}
	if len(skips) != 1 || skips[0].Test != "TestBrowser" || skips[0].Reason != "webui_test.go:30: chromium not installed (apt-get install chromium)" {
		t.Errorf("skips = %+v", skips)
	}
	var list strings.Builder
	printSkips(&list, skips)
	if !strings.Contains(list.String(), "1 tests skipped (a test whose required tool is missing fails instead under CI=true)") || !strings.Contains(list.String(), "ex/a TestBrowser: webui_test.go:30: chromium not installed") {
		t.Errorf("skip list:\n%s", list.String())
	}
}

func TestSummarizeFailures(t *testing.T) {
	for name, in := range map[string]string{
		"build failure": `{"ImportPath":"ex/d","Action":"build-output","Output":"d.go:3:1: syntax error\n"}` + "\n" +
			`{"ImportPath":"ex/d","Action":"build-fail"}` + "\n" + `{"Action":"output","Package":"ex/d","Output":"FAIL\tex/d [build failed]\n"}` + "\n" +
			`{"Action":"fail","Package":"ex/d"}`,
		"nothing ran": `not json at all`,
		"empty":       ``,
	} {
		var out strings.Builder
		_, failed, _ := summarize(strings.NewReader(in), &out)
		if !failed {
			t.Errorf("%s: not failed", name)
		}
		if name == "build failure" && !strings.Contains(out.String(), "syntax error") {
			t.Errorf("build failure: the error was not printed: %q", out.String())
		}
	}
	var out strings.Builder
	if _, failed, err := summarize(strings.NewReader(`{"Action":"pass","Package":"ex/a"}`), &out); failed || err != nil {
		t.Errorf("a passing package: failed %v, %v", failed, err)
	}
	var list strings.Builder
	printSkips(&list, nil)
	if !strings.Contains(list.String(), "No test skipped.") {
		t.Errorf("no skips: %q", list.String())
	}
}
